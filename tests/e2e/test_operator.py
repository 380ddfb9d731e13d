"""The operator process against the local cluster: it admits workflows into their status."""

from __future__ import annotations

import json
import urllib.request

from support.cluster import Cluster
from support.operator import OperatorProcess


def workflow(name: str, **spec: object) -> str:
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"tasks": [{"name": "a", "command": {"args": ["true"]}}], **spec},
    }
    return json.dumps(body)


def test_a_new_workflow_gets_observed_generation_a_ready_condition_and_pending(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("fresh"))
    crds.wait("twf/fresh", namespace, "jsonpath={.status.phase}=Pending")
    status = crds.get("twf", "fresh", namespace)["status"]
    assert status["observedGeneration"] == 1
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (
        "False",
        "Pending",
        1,
    )
    assert status["progress"] == "0/1"


def test_a_suspended_workflow_reports_suspended_and_resumes_to_pending(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("held", suspend=True))
    crds.wait("twf/held", namespace, "jsonpath={.status.phase}=Suspended")
    crds.kubectl(
        "patch", "twf", "held", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    crds.wait("twf/held", namespace, "jsonpath={.status.observedGeneration}=2")
    assert crds.get("twf", "held", namespace)["status"]["phase"] == "Pending"


def test_kubectl_get_shows_phase_and_progress_columns(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("listed"))
    crds.wait("twf/listed", namespace, "jsonpath={.status.phase}=Pending")
    row = crds.kubectl("get", "twf", "listed", "-n", namespace, "--no-headers").stdout.split()
    assert row[:3] == ["listed", "Pending", "0/1"]


def test_the_operator_serves_health_and_metrics(operator: OperatorProcess) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}/healthz") as reply:
        assert reply.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics") as reply:
        assert b"treadle_build_info" in reply.read()


def test_the_operator_logs_json(crds: Cluster, operator: OperatorProcess, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("logged"))
    crds.wait("twf/logged", namespace, "jsonpath={.status.phase}=Pending")
    lines = [line for line in operator.log_tail(100_000).splitlines() if line.startswith("{")]
    assert lines, "no JSON log line"
    assert all("message" in json.loads(line) for line in lines)


def test_a_cyclic_workflow_is_refused_with_the_cycle_path_and_never_runs(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    tasks = [
        {"name": "a", "dependsOn": ["c"], "command": {"args": ["true"]}},
        {"name": "b", "dependsOn": ["a"], "command": {"args": ["true"]}},
        {"name": "c", "dependsOn": ["b"], "command": {"args": ["true"]}},
    ]
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("loop", tasks=tasks))
    crds.wait("twf/loop", namespace, "jsonpath={.status.phase}=Invalid")
    status = crds.get("twf", "loop", namespace)["status"]
    assert status["message"] == "spec.tasks: dependency cycle a -> b -> c -> a"
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    assert crds.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout == ""
