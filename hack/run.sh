#!/usr/bin/env bash
# make run / make stop: the local cluster (or $KUBECONFIG's), Redis, the CRDs, the operator and
# the first example, then what to try next.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${TREADLE_STATE_DIR:-$root/.treadle}
bin=$root/.venv/bin
run=$state/run
mkdir -p "$run" "$state/logs"

say() { printf '[run %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

alive() { [[ -f $1 ]] && kill -0 "$(head -1 "$1")" 2>/dev/null; }

# apply_ready EXAMPLE OBJECT SECONDS WHY: applies examples/EXAMPLE and waits for OBJECT's Ready
# condition; else shows it and stops, saying WHY.
apply_ready() {
  "$kubectl" apply -f "$root/examples/$1" >/dev/null
  if ! "$kubectl" wait --for=condition=Ready --timeout="$3s" "$2" >/dev/null; then
    "$kubectl" get "$2" -o yaml >&2
    say "$4; see $state/logs/operator.log"
    exit 1
  fi
}

start() {
  # The local cluster's own kubeconfig (as "Try next" says to export) is the local cluster.
  if [[ -n ${KUBECONFIG:-} && $(realpath -m "$KUBECONFIG") == $(realpath -m "$state/kubeconfig") ]]; then
    unset KUBECONFIG
  fi
  if [[ -n ${KUBECONFIG:-} ]]; then
    say "using the cluster of KUBECONFIG=$KUBECONFIG"
    local_cluster=0
  else
    "$root/hack/cluster" up
    export KUBECONFIG=$state/kubeconfig
    local_cluster=1
  fi
  kubectl=$bin/kubectl
  # make stop removes what the operator registers in this cluster (it needs to know which).
  echo "$KUBECONFIG" >"$run/kubeconfig"

  # Worker pods on the local cluster have a network of their own: they reach this Redis at the
  # cluster's host address (hack/podnet.py), the operator at 127.0.0.1.
  local host_ip=
  if [[ $local_cluster == 1 && -f $state/network.json ]]; then
    host_ip=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hostIP"])' "$state/network.json")
  fi
  bash "$root/hack/redis.sh" start "$state/redis" ${host_ip:+"$host_ip"}
  # shellcheck disable=SC1091
  source "$state/redis/redis.env"
  export TREADLE_REDIS_URL TREADLE_WORKER_REDIS_URL

  say "installing the CRDs"
  "$kubectl" apply --server-side --force-conflicts -f "$root/crds/" >/dev/null
  # kubectl wait fails at once on a CRD whose status has no conditions yet: ask again.
  for attempt in $(seq 60); do
    "$kubectl" wait --for condition=established --timeout=60s \
      crd/workflows.treadle.dev crd/workflowtemplates.treadle.dev crd/syncjobs.treadle.dev \
      crd/workerpools.treadle.dev \
      >/dev/null 2>&1 && break
    [ "$attempt" = 60 ] && { say "the CRDs were never established"; exit 1; }
    sleep 1
  done

  if alive "$run/operator.pid"; then
    say "operator already running (pid $(head -1 "$run/operator.pid"))"
  else
    local health metrics webhook
    health=$(free_port)
    metrics=$(free_port)
    webhook=$(free_port)
    say "starting the operator (health 127.0.0.1:$health, metrics 127.0.0.1:$metrics, webhook 127.0.0.1:$webhook)"
    # The local API server presents its webhook client certificate (hack/localcluster.py):
    # the webhook answers nobody else.
    local client=()
    if [ -f "$state/pki/kube-apiserver-webhook-client.crt" ]; then
      client=(--webhook-client-ca "$state/pki/ca.crt" --webhook-client-name kube-apiserver-webhook-client)
    fi
    # The log API (kubectl treadle logs, ui): the API server forwards users' requests to it at
    # the cluster's host address, through a Service the operator makes.
    if [[ -n $host_ip ]]; then
      client+=(--logs-address "$host_ip:$(free_port)" --logs-publish)
    fi
    setsid "$bin/treadle" operator --health-address "127.0.0.1:$health" \
      --metrics-address "127.0.0.1:$metrics" --webhook-address "127.0.0.1:$webhook" \
      "${client[@]}" >>"$state/logs/operator.log" 2>&1 </dev/null &
    echo $! >"$run/operator.pid"
    echo "$health $metrics" >"$run/operator.ports"
    for _ in $(seq 150); do
      curl -fsS "http://127.0.0.1:$health/healthz" >/dev/null 2>&1 && break
      alive "$run/operator.pid" || { tail -30 "$state/logs/operator.log" >&2; exit 1; }
      sleep 0.2
    done
    curl -fsS "http://127.0.0.1:$health/healthz" >/dev/null || {
      say "the operator did not become healthy; see $state/logs/operator.log"
      exit 1
    }
  fi

  say "applying examples/00-worker-pool.yaml (the namespace's default pool) and waiting for its workers"
  apply_ready 00-worker-pool.yaml twp/default 120 "the default pool's workers did not start"
  say "applying examples/01-hello.yaml and waiting for it to succeed (on the pool)"
  apply_ready 01-hello.yaml twf/hello 180 "the example did not succeed"
  echo
  echo "hello's outputs:"
  "$kubectl" get twf hello -o jsonpath='{range .status.tasks.*}{.output}{"\n"}{end}'
  echo
  "$kubectl" get treadle
  echo
  cat <<EOF
Treadle is running.$([[ $local_cluster == 1 ]] && echo " The local cluster's kubeconfig: $KUBECONFIG")

Try next:
  export KUBECONFIG=$KUBECONFIG PATH=$bin:$(bash "$root/hack/tools.sh" --print):\$PATH
  kubectl treadle get hello                # the workflow as a tree: each task, its phase, output
  kubectl treadle logs hello               # what its tasks wrote (-f follows a running one)
  kubectl treadle ui                       # the web UI: workflows, DAGs, logs, sync jobs
  kubectl get twf,twp                      # workflows and worker pools, as kubectl lists them
  kubectl explain twf.spec.tasks           # every field, documented
  kubectl apply --dry-run=server -f my.yaml   # check a manifest as the operator would (argo lint)
  kubectl create namespace examples        # the other examples, in a namespace of their own:
  kubectl apply -n examples -f examples/   #   a 5-minute run (08) and two cron jobs (03, 09) among them
  kubectl delete namespace examples        #   and all gone again
  tail -f .treadle/logs/operator.log       # the operator's JSON log
  make stop                                # stop the operator and Redis (and unregister them)
  make cluster-down                        # and the local cluster
EOF
}

stop() {
  if alive "$run/operator.pid"; then
    local pid
    pid=$(head -1 "$run/operator.pid")
    say "stopping the operator (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$run/operator.pid"
  unregister
  bash "$root/hack/redis.sh" stop "$state/redis"
}

# What the local operator registered in the cluster goes with it, so that the chart can be
# installed next (helm refuses to take over objects it did not make): the log API's APIService,
# Service and Endpoints, the webhook configurations (kopf removes them on a clean stop, not
# after a kill) and the admission policy `make run` applied with the CRDs. The CRDs, and
# everything users applied, stay.
unregister() {
  [[ -f $run/kubeconfig ]] || return 0
  local config
  config=$(cat "$run/kubeconfig")
  rm -f "$run/kubeconfig"
  [[ -f $config ]] || return 0
  local k=("$bin/kubectl" --kubeconfig "$config" --request-timeout=10s)
  "${k[@]}" get --raw /readyz >/dev/null 2>&1 || { say "the cluster is not reachable: nothing unregistered"; return 0; }
  say "removing what the operator registered (log API, webhooks, admission policy)"
  local object
  for object in apiservice/v1alpha1.logs.treadle.dev \
    validatingwebhookconfiguration/treadle.dev mutatingwebhookconfiguration/treadle.dev \
    validatingadmissionpolicybinding/treadle-applied-by validatingadmissionpolicy/treadle-applied-by \
    "-n treadle-system service/treadle-logs" "-n treadle-system endpoints/treadle-logs"; do
    # shellcheck disable=SC2086  # "-n NS KIND/NAME" splits on purpose
    # A chart's own objects (a release on this cluster) are not the local operator's to remove.
    if [[ -z $("${k[@]}" get $object --ignore-not-found \
      -o 'jsonpath={.metadata.annotations.meta\.helm\.sh/release-name}' 2>/dev/null) ]]; then
      # shellcheck disable=SC2086
      "${k[@]}" delete $object --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
  done
}

"$@"
