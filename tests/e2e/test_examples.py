"""Every manifest under examples/ applies; every example workflow ends as the example says."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cluster import REPO, Cluster
from support.conditions import condition
from support.operator import OperatorProcess

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def expected_phases(path: Path) -> list[str]:
    """Each Workflow's end state, as its example says in an `# expect: Phase` line (Succeeded
    when it says none)."""
    found = []
    for text in path.read_text().split("\n---"):
        said = [line.split(":", 1)[1].strip() for line in text.splitlines()
                if line.startswith("# expect:")]  # fmt: skip
        if "kind: Workflow\n" in text + "\n":
            found.append(said[0] if said else "Succeeded")
    return found


def seen_by_the_plugin(
    cluster: Cluster, namespace: str, name: str, document: dict[str, Any]
) -> None:
    """`kubectl treadle get` shows each of the example's tasks, and `logs` reads every attempt
    it made (each made one attempt at least, or was skipped), all ended once it has."""
    tree = cluster.plugin("get", name, "-n", namespace).stdout
    spec = document.get("spec") or {}
    for task in [*(spec.get("tasks") or []), *(spec.get("onExit") or [])]:
        assert f" {task['name']} " in tree, tree
    printed = cluster.plugin("logs", name, "-n", namespace, "-o", "json").stdout
    attempts = json.loads(printed)["attempts"]
    status = cluster.get("twf", name, namespace)["status"]
    ran = {t for t, entry in status["tasks"].items() if entry.get("phase") != "Skipped"}
    assert {a["task"] for a in attempts} >= {
        t for t in ran if status["tasks"][t].get("attempts") or status["tasks"][t].get("items")
    }
    if status["phase"] not in ("Pending", "Running"):
        assert all(a["ended"] for a in attempts), attempts


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_applies_and_its_workflows_end_as_it_says(
    crds: Cluster, operator: OperatorProcess, namespace: str, path: Path
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", str(path))
    phases = iter(expected_phases(path))
    for document in yaml.safe_load_all(path.read_text()):
        name = document["metadata"]["name"]
        if document["kind"] == "Workflow":
            phase = next(phases)
            crds.wait(f"twf/{name}", namespace, f"jsonpath={{.status.phase}}={phase}", 180)
            if phase == "Succeeded":
                crds.wait(f"twf/{name}", namespace, "condition=Ready", timeout_seconds=30)
            seen_by_the_plugin(crds, namespace, name, document)
        elif document["kind"] == "WorkerPool":  # end state: its workers ready
            crds.wait(f"twp/{name}", namespace, "condition=Ready", timeout_seconds=120)
        elif document["kind"] == "SyncJob":  # end state: scheduled, waiting for its next slot
            crds.wait(f"sj/{name}", namespace, "condition=Ready", timeout_seconds=60)
            status = crds.get("sj", name, namespace)["status"]
            assert status["nextScheduleTime"] > status["conditions"][0]["lastTransitionTime"]


def test_the_fan_out_example_merges_every_child_output(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "02-fan-out.yaml"))
    crds.wait("twf/fan-out", namespace, "condition=Ready", timeout_seconds=180)
    status = crds.get("twf", "fan-out", namespace)["status"]
    assert status["tasks"]["square"]["succeeded"] == 5
    assert status["tasks"]["total"]["output"] == 1 + 4 + 9 + 16 + 25
    assert status["progress"] == "7/7"


def test_a_failing_task_is_retried_then_dead_lettered_and_the_workflow_fails(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "doomed"},
        "spec": {
            "defaults": {"retry": {"limit": 2, "backoff": {"durationSeconds": 1, "jitter": 0}}},
            "tasks": [
                {"name": "fail", "command": {"args": ["sh", "-c", "echo nope >&2; exit 3"]}},
                {"name": "after", "dependsOn": ["fail"], "command": {"args": ["true"]}},
            ],
        },
    }
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    crds.wait("twf/doomed", namespace, "jsonpath={.status.phase}=Failed", timeout_seconds=180)
    status = crds.get("twf", "doomed", namespace)["status"]
    assert status["tasks"]["fail"]["phase"] == "DeadLettered"
    assert status["tasks"]["fail"]["attempts"] == 3
    assert status["tasks"]["after"]["phase"] == "Skipped"
    [letter] = status["deadLetters"]
    assert (letter["task"], letter["attempts"], letter["error"]) == ("fail", 3, "exit code 3: nope")
    stalled = condition(status, "Stalled")
    assert stalled["status"] == "True"


def test_the_operator_counts_results_dead_letters_and_finished_workflows(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """After the tests above in this module (a success and a dead letter at least)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics") as reply:
        text = reply.read().decode()
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("treadle_") and " " in line
    }
    assert samples['treadle_task_results_total{outcome="succeeded"}'] >= 1
    assert samples['treadle_task_results_total{outcome="failed"}'] >= 3
    assert samples["treadle_dead_letters_total"] >= 1
    assert samples['treadle_workflows_finished_total{phase="Failed"}'] >= 1
    assert samples["treadle_status_write_seconds_count"] >= 1


def test_the_long_run_example_stops_and_terminates_as_its_comments_say(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    example = str(REPO / "examples" / "08-stop-and-terminate.yaml")
    crds.kubectl("apply", "-n", namespace, "-f", example)
    crds.wait("twf/long-run", namespace, "jsonpath={.status.tasks.tick.runningItems}=0-1", 120)
    began = time.monotonic()
    stopped = crds.plugin("stop", "long-run", "-n", namespace, "--watch", check=False)
    assert time.monotonic() - began < 30  # #32: it waited ~10 minutes for a 580 s task
    assert stopped.returncode == 1
    status = crds.get("twf", "long-run", namespace)["status"]
    assert status["phase"] == "Stopped"
    assert status["tasks"]["tock"]["phase"] == "Skipped"
    assert status["tasks"]["report"]["output"] == "long-run ended Stopped"

    crds.kubectl("delete", "-n", namespace, "-f", example)
    crds.kubectl("apply", "-n", namespace, "-f", example)
    crds.wait("twf/long-run", namespace, "jsonpath={.status.tasks.tick.runningItems}=0-1", 120)
    ended = crds.plugin("terminate", "long-run", "-n", namespace, "--watch", check=False)
    assert ended.returncode == 1
    status = crds.get("twf", "long-run", namespace)["status"]
    assert status["phase"] == "Terminated"
    assert status["tasks"]["report"]["output"] == "long-run ended Terminated"


def test_an_example_printed_by_the_plugin_applies_and_runs(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    listed = crds.plugin("example").stdout
    assert "hello" in listed
    assert "01-hello.yaml" in listed
    printed = crds.plugin("example", "hello").stdout
    assert printed == (REPO / "examples" / "01-hello.yaml").read_text()
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=printed)
    crds.wait("twf/hello", namespace, "condition=Ready", timeout_seconds=180)
    # ... and is seen as a tree, wide, as JSON, followed, and in the list of all namespaces.
    tree = crds.plugin("get", "hello", "-n", namespace).stdout.splitlines()
    assert tree[0].startswith(f"{namespace}/hello   Succeeded   2/2")
    names = [line.split()[1] for line in tree[1:]]
    assert names == ["say", "shout"]  # DAG order
    assert all("✔" in line for line in tree[1:])
    wide = crds.plugin("get", "hello", "-n", namespace, "-o", "wide").stdout
    assert "command" in wide
    body = json.loads(crds.plugin("get", "hello", "-n", namespace, "-o", "json").stdout)
    assert body["status"]["phase"] == "Succeeded"
    assert "managedFields" not in body["metadata"]
    assert crds.plugin("get", "hello", "-n", namespace, "--watch").returncode == 0
    listed = [line.split() for line in crds.plugin("list", "-A").stdout.splitlines()]
    assert listed[0][:3] == ["NAMESPACE", "NAME", "PHASE"]
    row = next(r for r in listed if r[:2] == [namespace, "hello"])
    assert row[2:4] == ["Succeeded", "2/2"]
    assert row[5].endswith("s")  # its duration
