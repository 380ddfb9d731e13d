"""A user allowed to create Workflows, SyncJobs and WorkerPools in a namespace gains no right
through them (issue #13, problem 3): no pod field outside the allow-list, no Secret they may
not read.
`kubectl --as` impersonates such a user through the real API server and webhook."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from support.cluster import Cluster
from support.operator import OperatorProcess
from support.redis_server import RedisServer
from support.syncjobs import eventually, reasons, status_of
from treadle.services import keys, queues

USER = "alice"
RBAC = "rbac.authorization.k8s.io"


@pytest.fixture
def creator(crds: Cluster, operator: OperatorProcess, namespace: str) -> str:
    """`alice` may create and read Treadle objects in `namespace`, and read no Secret."""
    crds.wait(
        "validatingwebhookconfiguration/treadle.dev", "default",
        "jsonpath={.metadata.name}=treadle.dev",
    )  # fmt: skip
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "treadle-creator"},
        "rules": [
            {
                "apiGroups": ["treadle.dev"],
                "resources": ["workflows", "syncjobs", "workerpools"],
                "verbs": ["create", "get", "list", "patch", "update", "delete"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "treadle-creator"},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "treadle-creator"},
        "subjects": [{"apiGroup": RBAC, "kind": "User", "name": USER}],
    }
    for body in (role, binding):
        crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    crds.kubectl("create", "secret", "generic", "db", "-n", namespace, "--from-literal=dsn=pw")
    return USER


def sync_job(name: str, pod: dict[str, Any]) -> str:
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "SyncJob",
        "metadata": {"name": name},
        "spec": {"schedule": "0 3 * * *", "suspend": True, "template": {"spec": pod}},
    }
    return json.dumps(body)


def container(**fields: Any) -> dict[str, Any]:
    return {"name": "sync", "image": "x", "command": ["true"], **fields}


def apply_as(cluster: Cluster, user: str, namespace: str, manifest: str) -> Any:
    return cluster.kubectl(
        "apply", f"--as={user}", "-n", namespace, "-f", "-", input=manifest, check=False
    )


def test_a_sync_job_that_would_give_root_on_the_node_is_refused_naming_each_field(
    crds: Cluster, namespace: str, creator: str
) -> None:
    pod = {
        "hostNetwork": True,
        "serviceAccountName": "default",
        "containers": [container(volumeMounts=[{"name": "root", "mountPath": "/host"}])],
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
    }
    result = apply_as(crds, creator, namespace, sync_job("rooted", pod))
    assert result.returncode != 0
    for field in ("hostNetwork", "serviceAccountName", "volumes[0].hostPath"):
        assert f"spec.template.spec.{field}: " in result.stderr
    assert crds.kubectl("get", "sj", "-n", namespace, "-o", "name").stdout == ""


def test_naming_a_secret_the_user_may_not_read_is_refused_and_allowed_for_one_who_may(
    crds: Cluster, namespace: str, creator: str
) -> None:
    secret_env = [{"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}}]
    manifest = sync_job("reader", {"containers": [container(env=secret_env)]})
    result = apply_as(crds, creator, namespace, manifest)
    assert result.returncode != 0
    assert (
        f"spec.template.spec: names Secret 'db', which '{creator}' may not get in namespace "
        f"'{namespace}'" in result.stderr
    )
    workflow = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "peek"},
        "spec": {
            "tasks": [{"name": "a", "command": {"args": ["sh", "-c", "echo $DSN"]}}],
            "workers": {"env": secret_env},
        },
    }
    result = apply_as(crds, creator, namespace, json.dumps(workflow))
    assert result.returncode != 0
    assert "spec.workers.env: names Secret 'db'" in result.stderr
    # A WorkerPool mounting it would hand it to every task of the pool: refused alike.
    pool = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "leaky"},
        "spec": {"secrets": ["db"]},
    }
    result = apply_as(crds, creator, namespace, json.dumps(pool))
    assert result.returncode != 0
    assert (
        f"spec.secrets[0]: names Secret 'db', which '{creator}' may not get in namespace "
        f"'{namespace}'" in result.stderr
    )
    # A template an admin made that reads it does not lend it to whoever runs the template.
    template = {**workflow, "kind": "WorkflowTemplate", "metadata": {"name": "peeking"}}
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(template))
    run = {**workflow, "spec": {"workflowTemplateRef": {"name": "peeking"}}}
    result = apply_as(crds, creator, namespace, json.dumps(run))
    assert result.returncode != 0
    assert f"spec.workers.env: names Secret 'db', which '{creator}' may not get" in result.stderr
    # The cluster admin may read it, so may name it.
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pool))


def test_a_scheduled_workflow_lends_its_author_no_secret_not_even_through_a_later_template(
    crds: Cluster, operator: OperatorProcess, namespace: str, creator: str
) -> None:
    secret_env = [{"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}}]
    reading = {"tasks": [{"name": "a", "command": {"args": ["sh", "-c", "echo $DSN"]}}],
               "workers": {"env": secret_env}}  # fmt: skip

    def job(name: str, workflow: dict[str, Any]) -> str:
        body = {"apiVersion": "treadle.dev/v1alpha1", "kind": "SyncJob",
                "metadata": {"name": name},
                "spec": {"schedule": "*/5 * * * * *", "workflow": workflow}}  # fmt: skip
        return json.dumps(body)

    def template(name: str, spec: dict[str, Any]) -> str:
        body = {"apiVersion": "treadle.dev/v1alpha1", "kind": "WorkflowTemplate",
                "metadata": {"name": name}, "spec": spec}  # fmt: skip
        return json.dumps(body)

    result = apply_as(crds, creator, namespace, job("inline", {"spec": reading}))
    assert result.returncode != 0
    assert f"spec.workflow.spec.workers.env: names Secret 'db', which '{creator}'" in result.stderr
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=template("peeking", reading))
    result = apply_as(
        crds, creator, namespace, job("peek", {"workflowTemplateRef": {"name": "peeking"}})
    )
    assert result.returncode != 0
    assert f"names Secret 'db', which '{creator}' may not get" in result.stderr
    # A template that reads nothing, which an admin later makes read the Secret.
    harmless = {"tasks": [{"name": "a", "command": {"args": ["echo", "hi"]}}]}
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=template("report", harmless))
    result = apply_as(
        crds, creator, namespace, job("report", {"workflowTemplateRef": {"name": "report"}})
    )
    assert result.returncode == 0, result.stderr
    ran = eventually(
        lambda: (s := status_of(crds, namespace, "report")).get("lastOutcome") == "Succeeded" and s,
        "a first run of the harmless template",
    )
    assert ran["templateSecrets"] == {"generation": 1, "names": []}  # kept by the API server
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=template("report", reading))
    refused = eventually(
        lambda: [r for r in reasons(crds, namespace, "report") if "now reads Secret" in r],
        "a run refused for the Secret the template now reads",
    )
    assert (
        "WorkflowTemplate 'report' now reads Secret 'db', which it did not when this SyncJob"
        in (refused[0])
    )
    for run in json.loads(crds.kubectl("get", "twf", "-n", namespace, "-o", "json").stdout)[
        "items"
    ]:
        assert "DSN" not in json.dumps(run.get("status", {}).get("templateSpec") or {})


def test_a_task_can_neither_reach_another_workflows_queue_nor_forge_its_results(
    crds: Cluster, operator: OperatorProcess, namespace: str, redis_server_process: RedisServer
) -> None:
    """Issue #13, problem 4: every worker had the full-rights Redis URL, so any task's code
    could read every tenant's queue, flush Redis or forge a result for any workflow.  Now its
    URL is its pool's own user's, and a result counts only on its own workflow's stream."""
    workers = {"env": [{"name": "PYTHONPATH", "value": str(Path(__file__).parents[1])}]}
    victim = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "victim"},
        "spec": {
            "workers": workers,
            "tasks": [
                {
                    "name": "slow",
                    "python": {
                        "callable": "support.tasks:slow_value",
                        "kwargs": {"seconds": 12, "value": "real"},
                    },
                },
                {
                    "name": "after",
                    "dependsOn": ["slow"],
                    "command": {"args": ["echo", "{{ tasks.slow.output }}"]},
                },
            ],
        },
    }
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(victim))
    crds.wait("twf/victim", namespace, "jsonpath={.status.phase}=Running")
    found = crds.get("twf", "victim", namespace)
    victim_uid, victim_run = found["metadata"]["uid"], found["status"]["runGeneration"]
    hostile = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "hostile"},
        "spec": {
            "workers": workers,
            "tasks": [
                {
                    "name": "trespass",
                    "python": {
                        "callable": "support.tasks:trespass",
                        "kwargs": {"own_uid": "{{ workflow.uid }}", "victim_uid": victim_uid,
                                   "victim_run": victim_run},
                    },
                }
            ],
        },
    }  # fmt: skip
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(hostile))
    crds.wait("twf/hostile", namespace, "condition=Ready", timeout_seconds=120)
    got = crds.get("twf", "hostile", namespace)["status"]["tasks"]["trespass"]["output"]
    assert got == {
        "read their tasks": "NoPermissionError",
        "forge in their stream": "NoPermissionError",
        "read their output": "NoPermissionError",
        "flush": "NoPermissionError",
        "list keys": "NoPermissionError",
        "stall redis": "NoPermissionError",
        "read the config": "NoPermissionError",
        "junk in my stream": got["junk in my stream"],
        "forge in my stream": got["forge in my stream"],
    }
    assert got["junk in my stream"].startswith("done")  # its own stream: set aside
    assert got["forge in my stream"].startswith("done")
    crds.wait("twf/victim", namespace, "condition=Ready", timeout_seconds=120)
    tasks = crds.get("twf", "victim", namespace)["status"]["tasks"]
    assert (tasks["slow"]["output"], tasks["after"]["output"]) == ("real", "real")
    [told] = [e for e in crds.events(namespace, "hostile") if e["reason"] == "ResultSetAside"]
    assert told["type"] == "Warning"
    assert "were no result of its own and were set aside in treadle:rejected" in told["message"]
    reasons = asyncio.run(rejected_reasons(redis_server_process.operator_url))
    hostile_uid = crds.get("twf", "hostile", namespace)["metadata"]["uid"]
    assert (
        f"a result for workflow {victim_uid} in the stream of pool wf-{hostile_uid}, which does "
        "not serve it"
    ) in reasons


async def rejected_reasons(url: str) -> list[str]:
    client = queues.connect(url)
    try:
        entries = await client.xrange(keys.REJECTED)
    finally:
        await client.aclose()
    return [fields["reason"] for _, fields in entries]


WEBHOOKS = ("validatingwebhookconfiguration", "mutatingwebhookconfiguration")


def workflow_manifest(name: str, spec: dict[str, Any], **annotations: str) -> str:
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }
    return json.dumps(body)


def workflow_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(cluster.get("workflow", name, namespace).get("status") or {})


def reading(**source: Any) -> dict[str, Any]:
    """A workflow whose worker pods get one variable from `source` (a Secret or ConfigMap)."""
    env = [{"name": "V", "valueFrom": source}]
    return {
        "tasks": [{"name": "a", "command": {"args": ["sh", "-c", "echo $V"]}}],
        "workers": {"env": env},
    }


def test_with_the_webhook_gone_nothing_runs_with_a_right_its_applier_lacks(
    crds: Cluster, operator: OperatorProcess, namespace: str, creator: str
) -> None:
    """Issue #31, problem 1: the Secret check lived only in the webhook, so whatever got past
    it (a 413, a timeout, the webhook removed) ran with the operator's reach.  Now the API
    server keeps a record of who applied each spec (policy treadle-applied-by) and the operator
    asks, as that user, before anything runs; ConfigMaps too (problem 4)."""
    saved = {
        kind: crds.kubectl("get", kind, "treadle.dev", "-o", "json").stdout for kind in WEBHOOKS
    }
    for kind in WEBHOOKS:
        crds.kubectl("delete", kind, "treadle.dev")
    try:
        secret = reading(secretKeyRef={"name": "db", "key": "dsn"})
        # No record of who applied it: it may use no Secret.
        assert apply_as(crds, creator, namespace, workflow_manifest("bare", secret)).returncode == 0
        # A record naming someone else: the API server itself refuses it.
        forged = workflow_manifest("forged", secret, **{"treadle.dev/applied-by": "system:admin"})
        result = apply_as(crds, creator, namespace, forged)
        assert result.returncode != 0
        assert "treadle-applied-by" in result.stderr
        assert "names system:admin, but alice" in result.stderr
        # Its own record: asked as alice, who may not read the Secret or the ConfigMap.
        own = {"treadle.dev/applied-by": creator, "treadle.dev/applied-by-groups":
               "system:authenticated"}  # fmt: skip
        for name, spec in (
            ("own", secret),
            ("config", reading(configMapKeyRef={"name": "settings", "key": "k"})),
        ):
            result = apply_as(crds, creator, namespace, workflow_manifest(name, spec, **own))
            assert result.returncode == 0, result.stderr
    finally:
        for body in saved.values():
            crds.kubectl("create", "-f", "-", input=body, check=False)
    invalid = {
        "bare": "spec.workers.env[0].valueFrom.secretKeyRef: names Secret 'db', but nothing "
        "records who applied this Workflow",
        "own": "spec.workers.env[0].valueFrom.secretKeyRef: names Secret 'db', which 'alice' "
        f"may not get in namespace '{namespace}'",
        "config": "spec.workers.env[0].valueFrom.configMapKeyRef: names ConfigMap 'settings', "
        f"which 'alice' may not get in namespace '{namespace}'",
    }
    for name, message in invalid.items():
        status = eventually(
            lambda name=name: (s := workflow_status(crds, namespace, name)).get("phase") and s,
            f"workflow {name} admitted",
        )
        assert status["phase"] == "Invalid"
        assert message in status["message"]
    assert crds.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout == ""


def test_a_manifest_over_a_mebibyte_is_checked_not_waved_through(
    crds: Cluster, operator: OperatorProcess, namespace: str, creator: str
) -> None:
    """Issue #31, problem 1: a Workflow padded past 1 MiB made the webhook answer 413, and
    with failurePolicy Ignore the API server stored it unchecked; it ran and printed the
    Secret."""
    crds.wait(
        "mutatingwebhookconfiguration/treadle.dev", "default",
        "jsonpath={.metadata.name}=treadle.dev",
    )  # fmt: skip
    webhooks = json.loads(crds.kubectl("get", WEBHOOKS[0], "treadle.dev", "-o", "json").stdout)
    assert {hook["failurePolicy"] for hook in webhooks["webhooks"]} == {"Fail"}
    padded = reading(secretKeyRef={"name": "db", "key": "dsn"})
    padded["params"] = {f"pad{i}": "x" * 60_000 for i in range(20)}
    # `create`, not `apply`: apply's last-applied annotation would be refused for its size
    result = crds.kubectl(
        "create", f"--as={creator}", "-n", namespace, "-f", "-",
        input=workflow_manifest("padded", padded), check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "spec.params: is 1200" in result.stderr
    assert "over the limit of 65536" in result.stderr
    assert crds.kubectl("get", "workflows", "-n", namespace, "-o", "name").stdout == ""
    # Applied by someone allowed, the webhook stamps them as its applier.
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow_manifest("fine", {
        "tasks": [{"name": "a", "command": {"args": ["true"]}}]}))  # fmt: skip
    annotations = crds.get("workflow", "fine", namespace)["metadata"]["annotations"]
    assert annotations["treadle.dev/applied-by"]


def job_workflow(name: str, **job: Any) -> str:
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"tasks": [{"name": "step", "job": {"image": "x", "command": ["true"], **job}}]},
    }
    return json.dumps(body)


def test_a_job_step_lends_no_right_pod_secret_or_job_its_author_lacks(
    crds: Cluster, namespace: str, creator: str
) -> None:
    """Issue #34: a `job` step is a pod the operator makes; writing a Workflow must not be a
    way around RBAC or the pod allow-list."""
    # Fields outside the allow-list, each named.
    rooted = job_workflow(
        "rooted",
        volumes=[{"name": "root", "hostPath": {"path": "/"}}],
        volumeMounts=[{"name": "root", "mountPath": "/host"}],
        securityContext={"privileged": True},
    )
    result = apply_as(crds, creator, namespace, rooted)
    assert result.returncode != 0
    for field in ("volumes[0].hostPath", "securityContext.privileged"):
        assert f"spec.tasks[0].job.{field}: " in result.stderr, result.stderr
    result = apply_as(crds, creator, namespace, job_workflow("sa", serviceAccountName="admin"))
    assert result.returncode != 0
    assert "serviceAccountName" in result.stderr
    # alice may not create Jobs herself: she may not have Treadle make one for her.
    result = apply_as(crds, creator, namespace, job_workflow("plain"))
    assert result.returncode != 0
    assert (
        f"spec.tasks[0].job: runs a pod of its own (a Job), which '{creator}' may not create "
        f"in namespace '{namespace}'" in result.stderr
    )
    # Given Jobs, she still may not have her step read a Secret she cannot read.
    jobs_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "jobs"},
        "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "jobs"},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "jobs"},
        "subjects": [{"apiGroup": RBAC, "kind": "User", "name": creator}],
    }
    for body in (jobs_role, binding):
        crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    secret_env = [{"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}}]
    result = apply_as(crds, creator, namespace, job_workflow("peek", env=secret_env))
    assert result.returncode != 0
    assert f"names Secret 'db', which '{creator}' may not get" in result.stderr, result.stderr
    # And with Jobs allowed, a plain step is hers to run.
    deadline = time.monotonic() + 30
    while (result := apply_as(crds, creator, namespace, job_workflow("plain"))).returncode:
        assert time.monotonic() < deadline, result.stderr  # RBAC caches take a moment
        time.sleep(1)
    # A step's log is its pod's, unmasked: a reader who may not read pod logs does not get it
    # through Treadle's log API either, however they may read workflow logs.
    crds.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=job_workflow("said", command=["python", "-c", "print('the step said this')"]),
    )  # fmt: skip
    crds.wait("twf/said", namespace, "condition=Ready", timeout_seconds=90)
    reader = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "log-reader"},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "treadle-log-reader"},
        "subjects": [{"apiGroup": RBAC, "kind": "User", "name": "bob"}],
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "treadle-log-reader"},
        "rules": [{"apiGroups": ["logs.treadle.dev"], "resources": ["workflowlogs"],
                   "verbs": ["get"]}],
    }  # fmt: skip
    crds.kubectl("apply", "-f", "-", input=json.dumps(role))
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(reader))
    deadline = time.monotonic() + 30
    path = f"/apis/logs.treadle.dev/v1alpha1/namespaces/{namespace}/workflowlogs/said"
    while True:
        seen = crds.kubectl("get", "--raw", path, "--as=bob", check=False)
        if seen.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)  # RBAC caches take a moment
    (attempt,) = json.loads(seen.stdout)["attempts"]
    assert attempt["note"] == "a job step's log is its pod's: reading it takes get pods/log"
    assert "log" not in attempt
    assert "the step said this" in crds.plugin("logs", "said", "-n", namespace).stdout
