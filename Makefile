# Treadle: the two commands a newcomer types are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE := $(or $(TREADLE_STATE_DIR),$(CURDIR)/.treadle)
LOCAL_KUBECONFIG := $(STATE)/kubeconfig

.PHONY: help venv tools redis-server cluster-up cluster-down cluster-status run stop test \
        test-unit test-integration test-e2e lint format crds bench faults

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[make] installing Python dependencies into $(VENV)"
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: $(BIN)/.installed ## create .venv with the package and the test tools

tools: ## build or install the pinned cluster tools into ~/.cache/treadle
	@bash hack/tools.sh >/dev/null

redis-server: ## install Debian's redis-server when missing
	@bash hack/redis.sh install

cluster-up: venv ## start the local cluster (etcd, kube-apiserver, controller-manager, node agent)
	@hack/cluster up

cluster-down: ## stop the local cluster and everything make run started
	@-bash hack/run.sh stop
	@hack/cluster down

cluster-status: ## show what the local cluster runs
	@hack/cluster status

run: venv redis-server ## start everything and run the example workflow
	@bash hack/run.sh start

faults: venv redis-server ## the fault-injection suite at full size; counts in bench/results/faults.*
	@$(BIN)/pip install -q -e '.[test,bench]'
	@TREADLE_FAULTS=full TREADLE_FAULTS_REPORT=bench/results/faults.json \
	  $(BIN)/python -m pytest tests/faults -v; status=$$?; \
	  $(BIN)/python bench/faults_report.py; exit $$status

bench: run ## benchmarks (bench/README.md): results, JSON and plots under bench/results
	@$(BIN)/pip install -q -e '.[test,bench]'
	@$(BIN)/python bench/throughput.py --tasks $${TASKS:-10000} --workers $${WORKERS:-2}
	@$(BIN)/python bench/fanout.py --children $${TASKS:-10000} --workers $${WORKERS:-2}
	@$(BIN)/python bench/latency.py --tasks $${CHAIN:-500}
	@$(BIN)/python bench/workflows.py --workflows $${WORKFLOWS:-1000}
	@$(BIN)/python bench/syncjobs.py --jobs $${JOBS:-500} --slots $${SLOTS:-2}

stop: ## stop the operator and Redis that make run started (the cluster keeps running)
	@bash hack/run.sh stop

crds: venv ## regenerate crds/, the chart's copy and docs/reference from the models
	@$(BIN)/python -m treadle.api.crds crds
	@$(BIN)/python -m treadle.api.crds charts/treadle/crds
	@$(BIN)/python -m treadle.api.reference docs/reference

lint: venv ## ruff, mypy and import-linter
	$(BIN)/ruff check operator tests hack bench
	$(BIN)/ruff format --check operator tests hack bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix operator tests hack bench
	$(BIN)/ruff format operator tests hack bench

test: venv redis-server lint ## install what tests need and run the whole suite
	$(BIN)/python -m pytest tests

test-unit: venv ## only the unit tests (no servers)
	$(BIN)/python -m pytest tests/unit

test-integration: venv redis-server
	$(BIN)/python -m pytest tests/integration

test-e2e: venv redis-server
	$(BIN)/python -m pytest tests/e2e
