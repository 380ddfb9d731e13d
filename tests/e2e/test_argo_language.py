"""What an Argo user reaches for, end to end on the local cluster: WorkflowTemplates and
`kubectl treadle submit -p ... --watch`, resubmit, conditions, exit tasks, retry rules with
Retry-After, stop and terminate."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cluster import Cluster
from support.conditions import condition
from support.http import JsonHandler, serving
from support.operator import OperatorProcess


def manifest(kind: str, name: str, spec: dict[str, Any]) -> str:
    body = {"apiVersion": "treadle.dev/v1alpha1", "kind": kind, "metadata": {"name": name}}
    return json.dumps({**body, "spec": spec})


def sh(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": {"args": ["sh", "-c", script]}, **extra}


def wait_for_line(path: Path, line: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not (path.exists() and line in path.read_text().split()):
        assert time.monotonic() < deadline, f"{line!r} never appeared in {path}"
        time.sleep(0.1)


def test_submit_runs_a_template_with_its_params_and_watch_follows_it_to_the_end(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    template = {
        "params": {"day": "2026-01-01", "region": "eu"},
        "tasks": [
            sh("extract", "echo '{\"day\": \"{{ params.day }}\"}'"),
            sh("load", "echo loaded {{ tasks.extract.output.day }} {{ params.region }}",
               dependsOn=["extract"]),
        ],
    }  # fmt: skip
    crds.kubectl(
        "apply", "-n", namespace, "-f", "-", input=manifest("WorkflowTemplate", "etl", template)
    )
    submitted = crds.plugin("submit", "etl", "-n", namespace, "-p", "day=2026-12-01", "--watch")
    assert submitted.returncode == 0
    name = submitted.stdout.split()[0].split("/")[1]
    assert name.startswith("etl-")
    assert "Succeeded" in submitted.stdout.splitlines()[-3]  # the last view: the workflow's line
    for task in ("extract", "load"):
        assert task in submitted.stdout
    status = crds.get("twf", name, namespace)["status"]
    assert status["tasks"]["load"]["output"] == "loaded 2026-12-01 eu"
    assert status["templateSpec"]["params"] == template["params"]

    refused = crds.plugin("submit", "etl", "-n", namespace, "-p", "dya=x", check=False)
    assert refused.returncode == 1
    assert "WorkflowTemplate 'etl' has no parameter 'dya'" in refused.stderr
    typo = manifest(
        "Workflow", "typo", {"workflowTemplateRef": {"name": "etl"}, "params": {"dya": "x"}}
    )
    applied = crds.kubectl("apply", "-n", namespace, "-f", "-", input=typo, check=False)
    assert applied.returncode != 0
    assert "spec.params.dya: WorkflowTemplate 'etl' has no parameter 'dya'" in applied.stderr

    # A manifest submitted as it is, its params given on the command line.
    body = {"kind": "Workflow", "apiVersion": "treadle.dev/v1alpha1",
            "metadata": {"generateName": "adhoc-"},
            "spec": {"tasks": [sh("say", "echo {{ params.word }}")]}}  # fmt: skip
    path = tmp_path / "adhoc.yaml"
    path.write_text(json.dumps(body))
    adhoc = crds.plugin("submit", "--from-file", str(path), "-n", namespace, "-p", "word=hi", "-w")
    adhoc_name = adhoc.stdout.split()[0].split("/")[1]
    assert crds.get("twf", adhoc_name, namespace)["status"]["tasks"]["say"]["output"] == "hi"

    # An edit of the template changes no run that started; resubmit runs the spec again.
    template["tasks"][1] = sh("load", "exit 9", dependsOn=["extract"])
    crds.kubectl(
        "apply", "-n", namespace, "-f", "-", input=manifest("WorkflowTemplate", "etl", template)
    )
    assert crds.get("twf", name, namespace)["status"]["phase"] == "Succeeded"
    again = crds.plugin("resubmit", name, "-n", namespace, "--watch", check=False)
    assert again.returncode == 1  # it ran the template as it is now, and that fails
    rerun = again.stdout.split()[0].split("/")[1]
    labels = crds.get("twf", rerun, namespace)["metadata"]["labels"]
    assert labels["treadle.dev/resubmitted-from"] == name


def test_conditions_skip_without_stopping_dependents_and_exit_tasks_see_the_outcome(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    spec = {
        "defaults": {"retry": {"limit": 0}},
        "tasks": [
            sh("check", "echo '{\"changed\": false}'"),
            sh("sync", "echo syncing", dependsOn=["check"],
               when="{{ tasks.check.output.changed }}"),
            sh("report", "echo reported", dependsOn=["sync"]),
            sh("broken", "exit 3"),
            sh("after-broken", "true", dependsOn=["broken"]),
        ],
        "onExit": [
            sh("notify", "echo {{ workflow.phase }} {{ workflow.failures | length }} "
               "{{ (workflow.failures | first).task }}"),
        ],
    }  # fmt: skip
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("Workflow", "lang", spec))
    crds.wait("twf/lang", namespace, "jsonpath={.status.phase}=Failed", timeout_seconds=120)
    status = crds.get("twf", "lang", namespace)["status"]
    tasks = status["tasks"]
    assert (tasks["sync"]["phase"], tasks["sync"]["reason"]) == ("Skipped", "ConditionFalse")
    assert tasks["report"]["phase"] == "Succeeded"  # Argo's rule
    assert (tasks["after-broken"]["phase"], tasks["after-broken"]["reason"]) == (
        "Skipped",
        "UpstreamFailed",
    )
    assert tasks["notify"]["output"] == "Failed 1 broken"
    assert status["message"] == "dead-lettered: broken; exit tasks: all succeeded"
    assert condition(status, "Stalled")["status"] == "True"


class Api(JsonHandler):
    calls: dict[str, list[float]] = {}

    def do_GET(self) -> None:
        Api.calls.setdefault(self.path, []).append(time.monotonic())
        if self.path == "/missing":
            self.reply(404, {"error": "no such path"})
        elif self.path == "/busy" and len(Api.calls[self.path]) == 1:
            self.reply(503, {"error": "busy"}, {"Retry-After": "3"})
        else:
            self.reply(200, {"path": self.path})


@pytest.fixture
def api(cluster: Cluster) -> Iterator[str]:
    Api.calls = {}
    with serving(Api) as url:
        yield url


def test_a_404_is_not_retried_and_a_503_waits_for_its_retry_after(
    crds: Cluster, operator: OperatorProcess, namespace: str, api: str
) -> None:
    retry = {"limit": 3, "backoff": {"durationSeconds": 0.2, "jitter": 0, "maxDurationSeconds": 30}}
    spec = {
        "defaults": {"retry": retry},
        "tasks": [
            {"name": "missing", "http": {"url": f"{api}/missing"}},
            {"name": "busy", "http": {"url": f"{api}/busy"}},
        ],
    }
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("Workflow", "calls", spec))
    crds.wait("twf/calls", namespace, "jsonpath={.status.phase}=Failed", timeout_seconds=120)
    tasks = crds.get("twf", "calls", namespace)["status"]["tasks"]
    assert (tasks["missing"]["phase"], tasks["missing"]["attempts"]) == ("DeadLettered", 1)
    assert tasks["missing"]["error"].startswith(
        "not retried (HTTP 404 is not in retry.retryOn.httpStatus (429, 5xx)): 404 from"
    )
    assert len(Api.calls["/missing"]) == 1
    assert (tasks["busy"]["phase"], tasks["busy"]["attempts"]) == ("Succeeded", 2)
    first, second = Api.calls["/busy"]
    assert second - first >= 3  # the Retry-After, not the 0.2 s backoff


def test_terminate_cancels_a_running_command_within_seconds_then_runs_the_exit_tasks(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    stubborn = f"trap 'echo term >> {log}; exit 143' TERM; echo started >> {log}; sleep 300 & wait"
    spec = {
        "tasks": [sh("long", stubborn), sh("next", "true", dependsOn=["long"])],
        "onExit": [sh("report", "echo {{ workflow.phase }}")],
    }
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("Workflow", "long", spec))
    wait_for_line(log, "started")
    began = time.monotonic()
    ended = crds.plugin("terminate", "long", "-n", namespace, "--watch", check=False)
    assert ended.returncode == 1  # it did not succeed
    assert time.monotonic() - began < 20
    wait_for_line(log, "term", seconds=10)  # the command got SIGTERM within its grace
    status = crds.get("twf", "long", namespace)["status"]
    assert status["phase"] == "Terminated"
    tasks = status["tasks"]
    assert (tasks["long"]["phase"], tasks["long"]["reason"]) == ("Skipped", "Terminated")
    assert (tasks["next"]["phase"], tasks["next"]["reason"]) == ("Skipped", "Terminated")
    assert tasks["report"]["output"] == "Terminated"
    assert condition(status, "Ready")["reason"] == "Terminated"


def test_stop_lets_the_running_attempt_finish_and_starts_nothing_new(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    spec = {
        "tasks": [
            sh("first", f"echo started >> {log}; sleep 3; echo finished >> {log}"),
            sh("second", f"echo second >> {log}", dependsOn=["first"]),
        ],
        "onExit": [sh("report", "echo {{ workflow.phase }}")],
    }
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("Workflow", "stopping", spec))
    wait_for_line(log, "started")
    # As a GitOps user would: the field in the manifest (kubectl treadle stop sets the same).
    crds.kubectl("patch", "twf/stopping", "-n", namespace, "--type=merge",
                 "-p", '{"spec": {"shutdown": "Stop"}}')  # fmt: skip
    crds.wait("twf/stopping", namespace, "jsonpath={.status.phase}=Stopped", timeout_seconds=60)
    assert log.read_text().split() == ["started", "finished"]
    tasks = crds.get("twf", "stopping", namespace)["status"]["tasks"]
    assert tasks["first"]["phase"] == "Succeeded"
    assert (tasks["second"]["phase"], tasks["second"]["reason"]) == ("Skipped", "Stopped")
    assert tasks["report"]["output"] == "Stopped"
    refused = crds.plugin("stop", "stopping", "-n", namespace, check=False)
    assert refused.returncode == 1
    assert "has ended already (Stopped)" in refused.stderr


def test_an_argo_manifest_is_refused_pointing_at_the_argo_guide(
    crds: Cluster, namespace: str
) -> None:
    """#32: an Argo Workflow's spec got only `unknown field "spec.templates"`."""
    argo = {
        "entrypoint": "main",
        "arguments": {"parameters": [{"name": "day", "value": "2026-12-01"}]},
        "templates": [{"name": "main", "container": {"image": "alpine", "command": ["date"]}}],
    }
    for kind in ("Workflow", "WorkflowTemplate"):
        refused = crds.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=manifest(kind, "from-argo", argo),
            check=False,
        )
        assert refused.returncode == 1
        assert "are Argo Workflows' fields, not Treadle's" in refused.stderr
        assert "docs/from-argo.md" in refused.stderr
        linted = crds.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-",
            input=manifest(kind, "from-argo", argo), check=False,
        )  # fmt: skip
        assert "docs/from-argo.md" in linted.stderr
