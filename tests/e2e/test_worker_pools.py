"""Worker pools on the local cluster: workflows run on a warm shared Deployment with no pod of
their own, a task on another pool, the pool grows with its backlog and shrinks to zero, the
scale subresource sizes it, and what does not fit a pool is refused at apply time."""

from __future__ import annotations

import json
import time
from typing import Any

from support.cluster import REPO, Cluster
from support.conditions import condition
from support.operator import OperatorProcess

PYTHONPATH = {"name": "PYTHONPATH", "value": str(REPO / "tests")}


def worker_pool(name: str, **spec: Any) -> str:
    spec.setdefault("env", [PYTHONPATH])
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": spec,
    }
    return json.dumps(body)


def workflow(name: str, tasks: list[dict[str, Any]], **spec: Any) -> str:
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"tasks": tasks, **spec},
    }
    return json.dumps(body)


def echo(name: str, text: str, **task: Any) -> dict[str, Any]:
    return {"name": name, "command": {"args": ["sh", "-c", f"echo {text}"]}, **task}


def apply(cluster: Cluster, namespace: str, manifest: str, check: bool = True) -> Any:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest, check=check)


def deployment_replicas(cluster: Cluster, namespace: str, pool: str) -> int:
    found = cluster.get("deployment", f"treadle-pool-{pool}", namespace)
    return int(found["spec"]["replicas"])


def poll(check: Any, timeout_seconds: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_seconds} s")


def test_a_workflow_naming_no_pool_runs_on_the_namespaces_default_pool_with_no_pod_of_its_own(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply(crds, namespace, worker_pool("default"))
    crds.wait("twp/default", namespace, "condition=Ready", timeout_seconds=120)
    tasks = [
        {"name": "add", "python": {"callable": "support.tasks:add", "kwargs": {"a": 2, "b": 3}}},
        echo("after", "{{ tasks.add.output.sum }}", dependsOn=["add"]),
    ]
    apply(crds, namespace, workflow("pooled", tasks))
    crds.wait("twf/pooled", namespace, "condition=Ready", timeout_seconds=120)
    status = crds.get("twf", "pooled", namespace)["status"]
    assert status["workerPool"] == "default"
    assert status["tasks"]["after"]["output"] == 5
    own = crds.kubectl(
        "get", "pods", "-n", namespace, "-l", "treadle.dev/workflow=pooled", "-o", "name"
    )
    assert own.stdout.strip() == ""  # no pod of its own was made
    table = crds.kubectl("get", "twp", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "BACKLOG", "RUNNING", "AGE"]
    assert table[1].split()[:4] == ["default", "1/1", "0", "0"]
    pool = crds.get("twp", "default", namespace)
    assert condition(pool["status"], "Ready")["status"] == "True"
    assert pool["status"]["selector"] == "treadle.dev/pool=default"


def test_a_task_runs_on_the_pool_it_names_and_the_rest_on_the_workflows(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    for name in ("main", "other"):
        apply(crds, namespace, worker_pool(name, env=[{"name": "MARK", "value": name}]))
    for name in ("main", "other"):
        crds.wait(f"twp/{name}", namespace, "condition=Ready", timeout_seconds=120)
    tasks = [echo("here", "$MARK"), echo("there", "$MARK", workerPool="other")]
    apply(crds, namespace, workflow("split", tasks, workerPool="main"))
    crds.wait("twf/split", namespace, "condition=Ready", timeout_seconds=120)
    outputs = crds.get("twf", "split", namespace)["status"]["tasks"]
    assert (outputs["here"]["output"], outputs["there"]["output"]) == ("main", "other")


def test_what_does_not_fit_its_pool_is_refused_at_apply_naming_the_field(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    crds.wait(
        "validatingwebhookconfiguration/treadle.dev", "default",
        "jsonpath={.metadata.name}=treadle.dev",
    )  # fmt: skip
    apply(crds, namespace, worker_pool("small", maxTaskSeconds=60))
    missing = apply(crds, namespace, workflow("lost", [echo("a", "x")], workerPool="nope"), False)
    assert missing.returncode != 0
    assert "spec.workerPool: WorkerPool 'nope' does not exist in this namespace" in missing.stderr
    header = {"name": "A", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
    call = {"name": "call", "http": {"url": "https://example.invalid", "headers": [header]}}
    crds.kubectl("create", "secret", "generic", "api", "-n", namespace, "--from-literal=token=t")
    unmounted = apply(crds, namespace, workflow("leaky", [call], workerPool="small"), False)
    assert "names Secret 'api', which WorkerPool 'small' does not mount" in unmounted.stderr
    slow = apply(
        crds, namespace, workflow("slow", [echo("a", "x", timeoutSeconds=120)], workerPool="small"),
        False,
    )  # fmt: skip
    assert "spec.tasks[0].timeoutSeconds: 120 s is longer than WorkerPool 'small'" in slow.stderr
    reserved = apply(
        crds, namespace, worker_pool("bad", env=[{"name": "TREADLE_REDIS_URL", "value": "x"}]),
        False,
    )  # fmt: skip
    assert "spec.env[0].name: 'TREADLE_REDIS_URL'" in reserved.stderr
    dotted = apply(crds, namespace, worker_pool("a.b"), False)
    assert "must be a DNS label" in dotted.stderr
    both = apply(
        crds, namespace, workflow("both", [echo("a", "x")], workerPool="small", workers={}), False
    )
    assert "set workerPool (a shared WorkerPool) or workers" in both.stderr
    assert crds.kubectl("get", "twf", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_a_pool_grows_with_its_backlog_and_shrinks_to_zero_when_idle(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply(
        crds, namespace,
        worker_pool(
            "elastic", replicas={"min": 0, "max": 3}, slotsPerWorker=2,
            targetBacklogPerWorker=2, scaleDownAfterSeconds=1,
        ),
    )  # fmt: skip
    crds.wait("twp/elastic", namespace, "condition=Ready", timeout_seconds=60)
    assert crds.get("twp", "elastic", namespace)["status"]["ready"] == "0/0"  # scaled to zero
    fan = {
        "name": "nap",
        "forEach": "{{ range(12) | list }}",
        "command": {"args": ["sleep", "1"]},
    }
    apply(crds, namespace, workflow("burst", [fan], workerPool="elastic", concurrency=12))
    poll(lambda: deployment_replicas(crds, namespace, "elastic") == 3, 60, "grew to max")
    crds.wait("twf/burst", namespace, "condition=Ready", timeout_seconds=180)
    poll(lambda: deployment_replicas(crds, namespace, "elastic") == 0, 60, "shrank to zero")
    crds.wait("twp/elastic", namespace, "jsonpath={.status.ready}=0/0", timeout_seconds=60)


def test_kubectl_scale_sizes_a_pool_without_autoscaling(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply(crds, namespace, worker_pool("fixed", autoscaling=False, replicas={"min": 0, "max": 3}))
    crds.wait("twp/fixed", namespace, "condition=Ready", timeout_seconds=60)
    crds.kubectl("scale", "twp/fixed", "-n", namespace, "--replicas=2")
    poll(lambda: deployment_replicas(crds, namespace, "fixed") == 2, 30, "scaled to 2")
    crds.wait("twp/fixed", namespace, "jsonpath={.status.ready}=2/2", timeout_seconds=90)
    scale = json.loads(
        crds.kubectl(
            "get",
            "--raw",
            f"/apis/treadle.dev/v1alpha1/namespaces/{namespace}/workerpools/fixed/scale",
        ).stdout
    )
    assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (2, 2)
    assert scale["status"]["selector"] == "treadle.dev/pool=fixed"


def test_a_long_task_shows_running_on_its_worker_within_seconds_of_its_start(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Any
) -> None:
    """#32: a task executing on a worker showed Queued from start to end, so a stuck queue
    looked like a long task."""
    began, release = tmp_path / "began", tmp_path / "release"
    apply(crds, namespace, worker_pool("default"))
    script = f"date +%s.%N > {began}; while [ ! -e {release} ]; do sleep 0.2; done"
    task = {"name": "long", "command": {"args": ["sh", "-c", script]}}
    apply(crds, namespace, workflow("long", [task]))
    poll(began.exists, 60, "the task began on a worker")
    started = float(began.read_text())

    def running() -> dict[str, Any] | None:
        entry = crds.get("twf", "long", namespace).get("status", {}).get("tasks", {}).get("long")
        return entry if entry and entry.get("phase") == "Running" else None

    entry = poll(running, 10, "the task shown Running")
    assert time.time() - started < 5, "shown Running more than 5 s after its start"
    assert entry["worker"].startswith("treadle-pool-default-")
    assert entry["attemptStartedAt"]
    shown = crds.plugin("get", "long", "-n", namespace).stdout
    assert "Running" in shown
    assert f"on {entry['worker']}" in shown
    release.touch()
    poll(
        lambda: crds.get("twf", "long", namespace).get("status", {}).get("phase") == "Succeeded",
        30,
        "the workflow succeeded",
    )
