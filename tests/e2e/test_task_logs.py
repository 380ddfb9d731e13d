"""`kubectl treadle logs`: each attempt's log read through the API server from the operator's
log API, with the reader's own credentials and RBAC (SPEC, The kubectl plugin: logs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.cluster import Cluster
from support.operator import OperatorProcess

LOG_PATH = "/apis/logs.treadle.dev/v1alpha1/namespaces/{namespace}/workflowlogs/{name}"
RBAC = "rbac.authorization.k8s.io"


def workflow(name: str, tasks: list[dict[str, Any]]) -> str:
    """Its workers import the tests' python tasks (support.tasks)."""
    tests = str(Path(__file__).parents[1])
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"workers": {"env": [{"name": "PYTHONPATH", "value": tests}]}, "tasks": tasks},
    }
    return json.dumps(body)


def run(crds: Cluster, namespace: str, manifest: str, name: str, phase: str = "Succeeded") -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    crds.wait(f"twf/{name}", namespace, f"jsonpath={{.status.phase}}={phase}", 180)


def test_every_attempts_log_is_read_by_task_child_and_attempt(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "flaky"
    tasks = [
        {"name": "say", "command": {"args": ["sh", "-c", "echo to-stderr >&2; sleep 0.2; echo 7"]}},
        {
            "name": "flaky",
            "dependsOn": ["say"],
            "python": {"callable": "support.tasks:fails_first", "kwargs": {"marker": str(marker)}},
            "retry": {"limit": 2, "backoff": {"durationSeconds": 1}},
        },
        {
            "name": "each",
            "dependsOn": ["say"],
            "forEach": "{{ [10, 20, 30] }}",
            "command": {"args": ["sh", "-c", "echo child {{ item }} >&2"]},
        },
    ]
    run(crds, namespace, workflow("chatty", tasks), "chatty")
    every = crds.plugin("logs", "chatty", "-n", namespace).stdout
    assert "==> say attempt 1 <==\nto-stderr\n7\n" in every
    assert "==> each[2] attempt 1 <==\nchild 30\n" in every
    first = crds.plugin("logs", "chatty", "flaky", "--attempt", "1", "-n", namespace).stdout
    assert first.startswith("first try: about to fail\n")
    assert "Traceback (most recent call last)" in first
    assert "RuntimeError: flaky on purpose" in first
    second = crds.plugin("logs", "chatty", "flaky", "--attempt", "2", "-n", namespace).stdout
    assert second == "second try: all good\n"
    child = crds.plugin("logs", "chatty", "each", "--item", "1", "-n", namespace).stdout
    assert child == "child 20\n"
    # The status points at the last attempt's log.
    status = json.loads(crds.kubectl("get", "twf/chatty", "-n", namespace, "-o", "json").stdout)
    assert status["status"]["tasks"]["flaky"]["logRef"].endswith(":log:g1:flaky:-:2")
    missing = crds.plugin("logs", "chatty", "nope", "-n", namespace, check=False)
    assert missing.returncode == 1
    assert 'has no task "nope"' in missing.stderr


def test_logs_follow_a_running_attempt_as_it_writes(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    script = f"echo started >&2; while [ ! -e {gate} ]; do sleep 0.1; done; echo finished >&2"
    crds.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=workflow("slow", [{"name": "wait", "command": {"args": ["sh", "-c", script]}}]),
    )  # fmt: skip
    with crds.plugin_process("logs", "slow", "-f", "-n", namespace) as following:
        assert following.stdout is not None
        try:
            assert following.stdout.readline() == "==> wait attempt 1 <==\n"
            assert following.stdout.readline() == "started\n"  # while the attempt still runs
            gate.touch()
            assert following.stdout.readline() == "finished\n"
            assert following.wait(60) == 0
        finally:
            following.kill()


@pytest.fixture
def reader(crds: Cluster, namespace: str) -> str:
    """`bob` may read workflows in `namespace`, not yet their logs."""
    role = {
        "apiVersion": f"{RBAC}/v1",
        "kind": "Role",
        "metadata": {"name": "workflow-reader"},
        "rules": [{"apiGroups": ["treadle.dev"], "resources": ["workflows"], "verbs": ["get"]}],
    }
    binding = {
        "apiVersion": f"{RBAC}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "workflow-reader"},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "workflow-reader"},
        "subjects": [{"apiGroup": RBAC, "kind": "User", "name": "bob"}],
    }
    for body in (role, binding):
        crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    return "bob"


def test_reading_logs_takes_the_readers_own_right_to_get_workflowlogs(
    crds: Cluster, operator: OperatorProcess, namespace: str, reader: str
) -> None:
    run(crds, namespace, workflow("secretive", [{"name": "t", "command": {"args": ["echo", "x"]}}]),
        "secretive")  # fmt: skip
    path = LOG_PATH.format(namespace=namespace, name="secretive")
    refused = crds.kubectl("get", "--raw", path, f"--as={reader}", check=False)
    assert refused.returncode != 0
    assert 'cannot get resource "workflowlogs" in API group "logs.treadle.dev"' in refused.stderr
    logs = {"apiGroups": ["logs.treadle.dev"], "resources": ["workflowlogs"], "verbs": ["get"]}
    crds.kubectl(
        "patch", "role/workflow-reader", "-n", namespace, "--type=json",
        "-p", json.dumps([{"op": "add", "path": "/rules/-", "value": logs}]),
    )  # fmt: skip
    allowed = json.loads(crds.kubectl("get", "--raw", path, f"--as={reader}").stdout)
    assert allowed["kind"] == "WorkflowLog"
    assert [a["log"] for a in allowed["attempts"]] == ["x\n"]
    # The log API answers the API server alone: a caller without its front-proxy
    # certificate, even one the cluster CA signed (the admin), is nobody.
    address = operator.option("--logs-address")
    headers = ["-H", "X-Remote-User: admin", "-H", "X-Remote-Group: system:masters"]
    url = f"https://{address}{path}"
    anonymous = subprocess.run(
        ["curl", "-sk", *headers, url], capture_output=True, text=True, timeout=30
    )
    assert json.loads(anonymous.stdout)["code"] == 401
    admin = ["--cert", str(crds.pki("admin.crt")), "--key", str(crds.pki("admin.key"))]
    signed = subprocess.run(
        ["curl", "-sk", *admin, *headers, url], capture_output=True, text=True, timeout=30
    )
    assert signed.returncode != 0  # refused at the handshake: no front-proxy certificate
    assert signed.stdout == ""
