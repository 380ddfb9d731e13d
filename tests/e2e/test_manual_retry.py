"""Dead letters and manual retry end to end: a task against a failing endpoint is retried with
growing delays, dead-lettered, listed by `kubectl treadle dlq list`, and succeeds after
`kubectl treadle retry` once the endpoint recovers; each step leaves an Event."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from support.cluster import Cluster
from support.conditions import condition
from support.http import JsonHandler, serving
from support.operator import OperatorProcess


class Flaky(JsonHandler):
    healthy = False
    calls: list[float] = []

    def do_GET(self) -> None:
        Flaky.calls.append(time.monotonic())
        if Flaky.healthy:
            self.reply(200, {"ok": True})
        else:
            self.reply(503, {"error": "down"})


@pytest.fixture
def endpoint(cluster: Cluster) -> Iterator[str]:
    Flaky.healthy, Flaky.calls = False, []
    with serving(Flaky) as url:
        yield f"{url}/ping"


def workflow(name: str, url: str) -> str:
    retry = {"limit": 2, "backoff": {"durationSeconds": 1, "factor": 3, "jitter": 0}}
    return json.dumps(
        {
            "apiVersion": "treadle.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name},
            "spec": {
                "tasks": [
                    {"name": "call", "http": {"url": url}, "retry": retry},
                    {"name": "after", "dependsOn": ["call"], "command": {"args": ["true"]}},
                ]
            },
        }
    )


def test_a_dead_lettered_task_succeeds_after_kubectl_treadle_retry(
    crds: Cluster, operator: OperatorProcess, namespace: str, endpoint: str
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("flaky", endpoint))
    crds.wait("twf/flaky", namespace, "jsonpath={.status.phase}=Failed", timeout_seconds=120)
    assert len(Flaky.calls) == 3
    first_gap, second_gap = (b - a for a, b in zip(Flaky.calls, Flaky.calls[1:], strict=False))
    assert 1 <= first_gap < second_gap  # 1 s, then 3 s (plus the driver's pass)
    assert second_gap >= 3

    listing = crds.plugin("dlq", "list", "-n", namespace).stdout
    for shown in ("flaky", "call", "503"):
        assert shown in listing
    letters = json.loads(crds.plugin("dlq", "list", "-n", namespace, "-o", "json").stdout)
    assert [(x["workflow"], x["task"], x["attempts"]) for x in letters] == [("flaky", "call", 3)]

    Flaky.healthy = True
    told = crds.plugin("retry", "flaky", "-n", namespace).stdout
    assert "re-queued 1 dead letter(s)" in told
    crds.wait("twf/flaky", namespace, "condition=Ready", timeout_seconds=120)
    status = crds.get("twf", "flaky", namespace)["status"]
    assert status["tasks"]["call"]["attempts"] == 4
    assert status["tasks"]["after"]["phase"] == "Succeeded"
    assert status["deadLetters"] == []
    assert "finishedAt" in status
    assert condition(status, "Stalled")["status"] == "False"
    assert len(Flaky.calls) == 4
    annotations = crds.get("twf", "flaky", namespace)["metadata"].get("annotations") or {}
    assert "treadle.dev/retry" not in annotations
    seen = [event["reason"] for event in crds.events(namespace, "flaky")]
    for reason in ("Started", "DeadLettered", "Failed", "Retried", "Succeeded"):
        assert reason in seen, seen


def test_a_retry_with_nothing_dead_lettered_is_refused_with_the_reason(
    crds: Cluster, operator: OperatorProcess, namespace: str, endpoint: str
) -> None:
    Flaky.healthy = True
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("fine", endpoint))
    crds.wait("twf/fine", namespace, "condition=Ready", timeout_seconds=120)
    refused = crds.plugin("retry", "fine", "-n", namespace, check=False)
    assert refused.returncode == 1
    assert "workflow 'fine' has nothing dead-lettered" in refused.stderr
    missing = crds.plugin("retry", "nope", "-n", namespace, check=False)
    assert f"workflow 'nope' not found in namespace '{namespace}'" in missing.stderr
    assert crds.plugin("dlq", "list", "-n", namespace).stdout.strip() == "No dead letters."
