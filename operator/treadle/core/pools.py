"""Worker pools, decided: which pool runs a workflow and each of its tasks, how many pods a pool
wants for its backlog, what its status says, and the Deployment that keeps its pods (SPEC,
Worker pools).

A shared pool's Redis keys live under `treadle:pool:<namespace>.<name>:` (a pool id with a dot;
a workflow's own pods use `wf-<uid>`, which has none), so pools of two namespaces never share a
stream, a user or a key even when they have the same name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from treadle.api import GROUP, VERSION, pools
from treadle.api.base import Condition
from treadle.api.pools import WorkerPoolSpec, WorkerPoolStatus
from treadle.api.workflows import Task, WorkflowSpec
from treadle.core import actions, conditions, podspecs, workerpods

POOL_LABEL = f"{GROUP}/pool"
"""On a pool's Deployment and pods: the pool's name."""
SECRETS_DIR = "/var/run/treadle/secrets"
"""Where a pool's pods find its Secrets: `<dir>/<secret>/<key>`."""
GRACE_MARGIN_SECONDS = 30
"""Added to `maxTaskSeconds` for the pods' termination grace: the worker's own shutdown."""
URL_ANNOTATION = f"{GROUP}/redis-url-digest"
"""On a pool's pod template: a digest of its workers' Redis URL (never the URL itself)."""


def shared_pool(namespace: str, name: str) -> str:
    """The id of a WorkerPool (its Redis key prefix, user and worker-URL key)."""
    return f"{namespace}.{name}"


def is_shared(pool: str) -> bool:
    """Whether a pool id is a WorkerPool's (not a workflow's own pods')."""
    return "." in pool


def pool_name(pool: str) -> str:
    """The WorkerPool's name in a shared pool id."""
    return pool.partition(".")[2]


def deployment_name(pool: str) -> str:
    return f"treadle-pool-{pool}"


def choose(spec: WorkflowSpec, *, default_exists: bool) -> str | None:
    """The WorkerPool a newly admitted workflow runs on (None: its own worker pods)."""
    if spec.worker_pool is not None:
        return spec.worker_pool
    if default_exists and not spec.own_workers:
        return pools.DEFAULT_POOL
    return None


def task_pools(spec: WorkflowSpec, namespace: str, workflow_pool: str) -> dict[str, str]:
    """The pool id each task runs on: its own `workerPool`, or the workflow's pool."""
    return {
        task.name: workflow_pool
        if task.worker_pool is None
        else shared_pool(namespace, task.worker_pool)
        for task in spec.all_tasks
    }


def pools_of(spec: WorkflowSpec, namespace: str, workflow_pool: str) -> set[str]:
    """Every pool a workflow's tasks run on."""
    return set(task_pools(spec, namespace, workflow_pool).values())


def named_pools(spec: WorkflowSpec, chosen: str | None) -> list[tuple[str, str]]:
    """The WorkerPools a workflow names (pool, field), its chosen one first; for the webhook's
    checks that each exists, mounts the Secrets its tasks read and runs attempts this long."""
    found: list[tuple[str, str]] = []
    if chosen is not None:
        found.append((chosen, "spec.workerPool"))
    for path, task in task_paths(spec):
        if task.worker_pool is not None:
            found.append((task.worker_pool, f"{path}.workerPool"))
    return found


def task_paths(spec: WorkflowSpec) -> list[tuple[str, Task]]:
    """Every task (the DAG's and the exit tasks) with its field path."""
    return [(f"spec.tasks[{i}]", task) for i, task in enumerate(spec.tasks)] + [
        (f"spec.onExit[{i}]", task) for i, task in enumerate(spec.on_exit)
    ]


def pool_problems(
    spec: WorkflowSpec,
    chosen: str | None,
    found: Mapping[str, WorkerPoolSpec],
    secrets: Mapping[str, Sequence[tuple[str, str]]],
    default_timeout_seconds: float,
) -> list[str]:
    """What refuses a workflow on its pools: a pool that does not exist, a Secret a task names
    that its pool does not mount, a timeout longer than its pool runs an attempt.  `found`: the
    pools of the namespace by name; `secrets`: the (Secret, field) pairs each task names."""
    problems: list[str] = []
    for name, path in named_pools(spec, chosen):
        if name not in found:
            problems.append(f"{path}: WorkerPool {name!r} does not exist in this namespace")
    for path, task in task_paths(spec):
        if actions.own_pod(task):
            continue  # its own pod mounts what it names; its timeout is its Job's deadline
        runs_on = task.worker_pool or chosen
        pool = found.get(runs_on) if runs_on is not None else None
        if pool is None:
            continue
        for secret, path in secrets.get(task.name, ()):
            if secret not in pool.secrets:
                problems.append(
                    f"{path}: names Secret {secret!r}, which WorkerPool {runs_on!r} does not "
                    "mount "
                    "(add it to the pool's spec.secrets)"
                )
        timeout = task.timeout_seconds or spec.defaults.timeout_seconds or default_timeout_seconds
        if timeout > pool.max_task_seconds:
            problems.append(
                f"{path}.timeoutSeconds: {timeout:g} s is longer than WorkerPool "
                f"{runs_on!r} runs an attempt (maxTaskSeconds {pool.max_task_seconds})"
            )
    return problems


@dataclass(frozen=True)
class Load:
    """A pool's work as its task stream shows it."""

    backlog: int
    """Attempts enqueued and not yet read by a worker."""
    running: int
    """Attempts read by a worker and not yet finished."""


@dataclass(frozen=True)
class Scaling:
    replicas: int
    """The pods the pool's Deployment should have now."""
    low_since: datetime | None
    """Since when fewer pods would have done (None: not so now)."""


def scale(
    spec: WorkerPoolSpec, *, current: int, load: Load, low_since: datetime | None, now: datetime
) -> Scaling:
    """How many pods the pool wants: enough that each has at most `targetBacklogPerWorker`
    attempts queued or running, at least one while there is work, within min and max.  Growing
    is at once; shrinking only after fewer pods sufficed for `scaleDownAfterSeconds` (a worker
    told to stop drains, so shrinking loses nothing, but pods started again cost seconds)."""
    bounds = spec.replicas
    if not spec.autoscaling:
        wanted = bounds.min if bounds.desired is None else bounds.desired
        return Scaling(min(max(wanted, bounds.min), bounds.max), None)
    work = load.backlog + load.running
    need = math.ceil(work / spec.target_backlog_per_worker)
    need = min(max(need, bounds.min, 1 if work else 0), bounds.max)
    if need >= current:
        return Scaling(need, None)
    since = low_since or now
    if (now - since).total_seconds() >= spec.scale_down_after_seconds:
        return Scaling(need, None)
    return Scaling(current, since)


@dataclass(frozen=True)
class Rollout:
    """The pool's Deployment as the API server reports it."""

    ready: int = 0
    """Pods ready."""
    updated: int = 0
    """Pods of the current template."""
    stalled: str | None = None
    """Why the rollout stopped progressing (its Progressing condition False), or None."""
    theirs: str | None = None
    """A Deployment of that name that is not this pool's (the pool then makes none)."""


def pool_status(
    spec: WorkerPoolSpec,
    previous: Sequence[Condition],
    *,
    name: str,
    replicas: int,
    rollout: Rollout,
    load: Load,
    generation: int | None,
    now: datetime,
) -> WorkerPoolStatus:
    """The status a pool's look finds: sizes, load and its kstatus conditions."""
    ready = min(rollout.ready, replicas) if replicas else 0
    stalled = rollout.theirs or rollout.stalled
    if stalled:
        reason, message, ok = "Stalled", stalled, False
    elif rollout.ready >= replicas and rollout.updated >= replicas:
        reason = "ScaledToZero" if replicas == 0 else "Ready"
        message, ok = f"{rollout.ready}/{replicas} workers ready", True
    else:
        reason, ok = "Scaling", False
        message = f"{rollout.ready}/{replicas} workers ready, {rollout.updated} up to date"
    return WorkerPoolStatus(
        replicas=replicas,
        ready_replicas=rollout.ready,
        ready=f"{ready}/{replicas}",
        backlog=load.backlog,
        running=load.running,
        selector=f"{POOL_LABEL}={name}",
        observed_generation=generation,
        message=message,
        conditions=conditions.kstatus(
            previous,
            ready=ok,
            reconciling=not ok and not stalled,
            stalled=bool(stalled),
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        ),
    )


def invalid_status(
    previous: Sequence[Condition], message: str, *, generation: int | None, now: datetime
) -> WorkerPoolStatus:
    """The status of a pool whose spec is refused (nothing of it runs)."""
    return WorkerPoolStatus(
        observed_generation=generation,
        message=message,
        conditions=conditions.invalid(previous, message, generation=generation, now=now),
    )


def deployment(
    *,
    name: str,
    namespace: str,
    uid: str,
    spec: WorkerPoolSpec,
    replicas: int,
    default_image: str,
    metrics_port: int = 0,
    url_digest: str = "",
) -> dict[str, Any]:
    """The Deployment that keeps a pool's worker pods, owned by the pool.  Its pods are
    *restricted*, have no service-account token, mount only the pool's Secrets, and are given
    `maxTaskSeconds` to finish what they hold when told to stop (rollout, scale-down).
    `url_digest` (a digest of the workers' Redis URL) is on the pod template, so a Redis that
    moved rolls the workers onto its new address."""
    worker = workerpods.container(
        pool=shared_pool(namespace, name),
        image=spec.image or default_image,
        flags=[
            f"--concurrency={spec.slots_per_worker}",
            f"--reap-idle-seconds={spec.redeliver_after_seconds}",
            f"--drain-seconds={spec.max_task_seconds}",
        ],
        env=[
            {"name": "TREADLE_SECRETS_DIR", "value": SECRETS_DIR},
            *({"name": variable.name, "value": variable.value} for variable in spec.env),
        ],
        resources=spec.resources,
        metrics_port=metrics_port,
        mounts=[
            {"name": f"secret-{index}", "mountPath": f"{SECRETS_DIR}/{secret}", "readOnly": True}
            for index, secret in enumerate(spec.secrets)
        ],
    )
    annotations = workerpods.metrics_annotations(metrics_port)
    if url_digest:
        annotations[URL_ANNOTATION] = url_digest
    labels = {
        POOL_LABEL: name,
        workerpods.COMPONENT_LABEL: "worker",
        "app.kubernetes.io/name": "treadle",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(name),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": pools.KIND,
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {POOL_LABEL: name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
            },
            "progressDeadlineSeconds": 300,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "restartPolicy": "Always",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": spec.max_task_seconds + GRACE_MARGIN_SECONDS,
                    "securityContext": podspecs.restricted_pod_context(),
                    "containers": [worker],
                    "volumes": [
                        {"name": f"secret-{index}", "secret": {"secretName": secret}}
                        for index, secret in enumerate(spec.secrets)
                    ],
                },
            },
        },
    }


def env_problems(spec: WorkerPoolSpec) -> list[str]:
    """Names Treadle reserves are refused in a pool's env; its resources must be quantities."""
    problems = podspecs.env_problems([{"name": v.name} for v in spec.env], "spec.env")
    return problems + podspecs.resources_problems(spec.resources, "spec.resources")
