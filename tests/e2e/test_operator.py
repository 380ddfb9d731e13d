"""The operator process against the local cluster: it admits workflows into their status."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cluster import Cluster
from support.conditions import condition
from support.operator import OperatorProcess


def workflow(name: str, **spec: object) -> str:
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"tasks": [{"name": "a", "command": {"args": ["true"]}}], **spec},
    }
    return json.dumps(body)


def test_a_workflow_runs_on_worker_pods_to_succeeded_and_becomes_ready(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("fresh"))
    crds.wait("twf/fresh", namespace, "condition=Ready", timeout_seconds=120)
    status = crds.get("twf", "fresh", namespace)["status"]
    assert (status["phase"], status["progress"], status["observedGeneration"]) == (
        "Succeeded",
        "1/1",
        1,
    )
    ready = condition(status, "Ready")
    assert (ready["reason"], ready["observedGeneration"]) == ("Succeeded", 1)
    assert status["tasks"]["a"]["phase"] == "Succeeded"
    # The worker pods go once the workflow finished.
    crds.kubectl(
        "wait",
        "--for=delete",
        "pod",
        "-l",
        "treadle.dev/workflow=fresh",
        "-n",
        namespace,
        "--timeout=60s",
    )


def test_a_large_output_lives_in_redis_and_still_reaches_the_next_task(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    rows = "[" + ",".join(f'{{"id": {i}, "name": "customer-{i:05d}"}}' for i in range(400)) + "]"
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "large"},
        "spec": {
            "tasks": [
                {"name": "export", "command": {"args": ["echo", rows]}},
                {
                    "name": "count",
                    "dependsOn": ["export"],
                    "command": {"args": ["echo", "{{ tasks.export.output | length }}"]},
                },
            ]
        },
    }
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    crds.wait("twf/large", namespace, "condition=Ready", timeout_seconds=120)
    tasks = crds.get("twf", "large", namespace)["status"]["tasks"]
    assert tasks["export"]["outputRef"].endswith(":out:g1:export:-")
    assert "output" not in tasks["export"]
    assert tasks["count"]["output"] == 400


def test_a_fan_out_of_2000_children_with_4_kb_outputs_finishes_and_its_status_stays_small(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """#13, problem 5: this stopped at 267/2001 with the object at 1.1 MB ("etcdserver:
    request is too large"); children's outputs are now never inline."""
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wide"},
        "spec": {
            "concurrency": 200,
            "workers": {
                "replicas": 2,
                "env": [{"name": "PYTHONPATH", "value": str(Path(__file__).parents[1])}],
            },
            "tasks": [
                {
                    "name": "pad",
                    "forEach": "{{ range(2000) | list }}",
                    "python": {
                        "callable": "support.tasks:padded",
                        "kwargs": {"index": "{{ item }}"},
                    },
                },
                {
                    "name": "sum",
                    "dependsOn": ["pad"],
                    "command": {
                        "args": [
                            "echo",
                            "{{ tasks.pad.outputs | map('length') | sum }}"
                            " {{ (tasks.pad.outputs | last)[-4:] }}",
                        ]
                    },
                },
            ],
        },
    }
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    crds.wait("twf/wide", namespace, "condition=Ready", timeout_seconds=300)
    status = crds.get("twf", "wide", namespace)["status"]
    assert (status["phase"], status["progress"]) == ("Succeeded", "2001/2001")
    assert status["tasks"]["sum"]["output"] == "8000000 1999"
    assert len(json.dumps(status)) < 16 * 1024


def test_tasks_whose_worker_never_starts_fail_with_the_pods_reason(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """#13, problem 6: a worker that never starts left tasks Queued with no timeout."""
    missing = {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "stuck"},
        "spec": {
            "workers": {"startTimeoutSeconds": 10, "env": [missing]},
            "defaults": {"retry": {"limit": 0}},
            "tasks": [{"name": "a", "command": {"args": ["true"]}}],
        },
    }
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    crds.wait("twf/stuck", namespace, "jsonpath={.status.phase}=Failed", timeout_seconds=150)
    task = crds.get("twf", "stuck", namespace)["status"]["tasks"]["a"]
    assert task["phase"] == "DeadLettered"
    assert task["error"].startswith("no worker started within 10 s: pod ")
    assert "CreateContainerConfigError" in task["error"]


def test_a_suspended_workflow_reports_suspended_and_runs_when_resumed(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("held", suspend=True))
    crds.wait("twf/held", namespace, "jsonpath={.status.phase}=Suspended")
    crds.kubectl(
        "patch", "twf", "held", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    crds.wait("twf/held", namespace, "jsonpath={.status.phase}=Succeeded", timeout_seconds=120)
    assert crds.get("twf", "held", namespace)["status"]["observedGeneration"] == 2


def test_kubectl_get_shows_phase_and_progress_columns(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("listed"))
    crds.wait("twf/listed", namespace, "jsonpath={.status.phase}=Succeeded", timeout_seconds=120)
    row = crds.kubectl("get", "twf", "listed", "-n", namespace, "--no-headers").stdout.split()
    assert row[:3] == ["listed", "Succeeded", "1/1"]


def test_the_operator_serves_health_and_metrics(operator: OperatorProcess) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}/healthz") as reply:
        assert reply.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics") as reply:
        assert b"treadle_build_info" in reply.read()
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.liveness_port}/livez") as reply:
        assert reply.read() == b"ok\n"


def test_the_operator_logs_json(crds: Cluster, operator: OperatorProcess, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("logged"))
    crds.wait("twf/logged", namespace, "jsonpath={.status.observedGeneration}=1")
    lines = [line for line in operator.log_tail(100_000).splitlines() if line.startswith("{")]
    assert lines, "no JSON log line"
    assert all("message" in json.loads(line) for line in lines)


@contextlib.contextmanager
def webhook_removed(cluster: Cluster) -> Iterator[None]:
    """The webhook configuration removed for a while, as on a cluster that lacks it."""
    name = "validatingwebhookconfiguration/treadle.dev"
    saved = json.loads(cluster.kubectl("get", name, "-o", "json").stdout)
    cluster.kubectl("delete", name)
    try:
        yield
    finally:
        for field in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            saved["metadata"].pop(field, None)
        cluster.kubectl("create", "-f", "-", input=json.dumps(saved))


@pytest.fixture
def without_webhook(crds: Cluster, operator: OperatorProcess) -> Iterator[None]:
    with webhook_removed(crds):
        yield


def test_without_the_webhook_the_operator_refuses_a_cyclic_workflow_with_its_path(
    crds: Cluster, operator: OperatorProcess, namespace: str, without_webhook: None
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
    stalled = condition(status, "Stalled")
    assert stalled["status"] == "True"
    assert crds.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout == ""


def test_kubectl_apply_of_a_cyclic_workflow_is_rejected_by_the_webhook_with_the_path(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    crds.wait(
        "validatingwebhookconfiguration/treadle.dev",
        "default",
        "jsonpath={.metadata.name}=treadle.dev",
    )
    tasks = [
        {"name": "a", "dependsOn": ["b"], "command": {"args": ["true"]}},
        {"name": "b", "dependsOn": ["a"], "command": {"args": ["true"]}},
    ]
    result = crds.kubectl(
        "apply", "-n", namespace, "-f", "-", input=workflow("cyclic", tasks=tasks), check=False
    )
    assert result.returncode != 0
    assert "spec.tasks: dependency cycle a -> b -> a" in result.stderr
    assert crds.kubectl("get", "twf", "-n", namespace, "-o", "name").stdout == ""


def test_the_webhook_answers_only_the_api_servers_client_certificate(
    crds: Cluster, operator: OperatorProcess
) -> None:
    """#13, problem 1: the webhook checked no client certificate, so anything that could reach
    its port could make the operator validate (and render) what it liked."""
    import ssl

    [address] = [a.split("=", 1)[1] for a in operator.argv if a.startswith("--webhook-address")]
    host, _, port = address.rpartition(":")
    pki = crds.kubeconfig.parent / "pki"
    review = json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "operation": "CREATE", "object": json.loads(workflow("x")),
            "resource": {"group": "treadle.dev", "version": "v1alpha1", "resource": "workflows"},
            "kind": {"group": "treadle.dev", "version": "v1alpha1", "kind": "Workflow"},
            "namespace": "default", "name": "x", "userInfo": {"username": "admin"},
        },
    }).encode()  # fmt: skip

    def call(cert: str | None) -> dict[str, object]:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        if cert is not None:
            context.load_cert_chain(pki / f"{cert}.crt", pki / f"{cert}.key")
        request = urllib.request.Request(
            f"https://{host}:{port}/validate-workflow", data=review,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, context=context, timeout=10) as reply:
            answer: dict[str, object] = json.loads(reply.read())
            return answer

    with pytest.raises((urllib.error.URLError, ConnectionError)):  # no certificate: refused
        call(None)
    # The cluster's CA signs users' certificates too: an admin's is not the API server's.
    refused = call("admin")["response"]
    assert refused["allowed"] is False  # type: ignore[index]
    assert "is not the API server's" in refused["status"]["message"]  # type: ignore[index]
    # The API server itself (its admission kubeconfig presents kube-apiserver-webhook-client).
    answered = call("kube-apiserver-webhook-client")["response"]
    assert answered["uid"] == "u-1"  # type: ignore[index]
    assert answered["allowed"] is True  # type: ignore[index]


def test_kubectl_apply_of_a_template_reading_a_non_ancestor_is_rejected(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    tasks = [
        {"name": "a", "command": {"args": ["true"]}},
        {"name": "b", "command": {"args": ["echo", "{{ tasks.a.output }}"]}},
    ]
    result = crds.kubectl(
        "apply", "-n", namespace, "-f", "-", input=workflow("peek", tasks=tasks), check=False
    )
    assert result.returncode != 0
    assert "spec.tasks[1].command.args[1]: task 'a' is not an ancestor of 'b'" in result.stderr


def test_kubectl_apply_of_a_sync_job_with_a_bad_schedule_is_rejected(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    job = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "SyncJob",
        "metadata": {"name": "bad"},
        "spec": {
            "schedule": "61 * * * *",
            "timeZone": "Mars/Olympus",
            "template": {"spec": {"containers": [{"name": "c", "command": ["true"]}]}},
        },
    }
    result = crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job), check=False)
    assert result.returncode != 0
    assert "spec.timeZone: unknown time zone 'Mars/Olympus'" in result.stderr
    assert "spec.schedule:" in result.stderr


def test_an_invalid_workflow_admitted_before_the_webhook_can_still_be_labelled_and_deleted(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    tasks = [{"name": "a", "dependsOn": ["a"], "command": {"args": ["true"]}}]
    with webhook_removed(crds):
        crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("legacy", tasks=tasks))
    crds.wait("twf/legacy", namespace, "jsonpath={.status.phase}=Invalid")
    crds.kubectl("label", "twf", "legacy", "-n", namespace, "team=data")
    crds.kubectl("delete", "twf", "legacy", "-n", namespace, "--timeout=30s")


def test_the_operator_runs_without_the_webhook(crds: Cluster, tmp_path: Path) -> None:
    from support import operator as operator_process

    plain = operator_process.start(crds, tmp_path / "plain.log", "", webhook=False)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{plain.health_port}/healthz") as reply:
            assert reply.status == 200
    finally:
        plain.stop()


def two_tasks(name: str, greeting: str) -> str:
    tasks = [
        {"name": "say", "command": {"args": ["echo", "{{ params.greeting }}"]}},
        {
            "name": "again",
            "dependsOn": ["say"],
            "command": {"args": ["echo", "{{ params.greeting }}"]},
        },
    ]
    return workflow(name, tasks=tasks, params={"greeting": greeting})


def test_editing_a_started_workflows_spec_is_refused_and_suspend_is_not(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """Issue #13, problem 2: a `kubectl patch` of spec.params of a Succeeded workflow turned it
    `Running 0/2, 1 in flight` for good."""
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=two_tasks("edited", "hi"))
    crds.wait("twf/edited", namespace, "condition=Ready", timeout_seconds=120)
    result = crds.kubectl(
        "patch", "twf", "edited", "-n", namespace, "--type=merge",
        "-p", '{"spec": {"params": {"greeting": "bye"}}}', check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "spec.params: a started workflow's spec cannot change" in result.stderr
    crds.kubectl(
        "patch", "twf", "edited", "-n", namespace, "--type=merge",
        "-p", '{"spec": {"activeDeadlineSeconds": 600}}',
    )  # fmt: skip
    crds.wait("twf/edited", namespace, "jsonpath={.status.observedGeneration}=2")
    status = crds.get("twf", "edited", namespace)["status"]
    assert (status["phase"], status["progress"]) == ("Succeeded", "2/2")
    crds.wait("twf/edited", namespace, "condition=Ready", timeout_seconds=30)


def test_a_spec_changed_around_the_webhook_runs_again_and_finishes(
    crds: Cluster, operator: OperatorProcess, namespace: str, without_webhook: None
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=two_tasks("rerun", "hi"))
    crds.wait("twf/rerun", namespace, "condition=Ready", timeout_seconds=120)
    crds.kubectl(
        "patch", "twf", "rerun", "-n", namespace, "--type=merge",
        "-p", '{"spec": {"params": {"greeting": "bye"}}}',
    )  # fmt: skip
    crds.wait("twf/rerun", namespace, "jsonpath={.status.observedGeneration}=2")
    crds.wait("twf/rerun", namespace, "condition=Ready", timeout_seconds=120)
    status = crds.get("twf", "rerun", namespace)["status"]
    assert (status["phase"], status["progress"], status["runGeneration"]) == ("Succeeded", "2/2", 2)
    assert status["tasks"]["again"]["output"] == "bye"
