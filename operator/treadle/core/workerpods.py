"""The worker container, built once for both homes of worker processes: a WorkerPool's
Deployment (core/pools.py) and a workflow's own pods (`workflow_pod`, here).  Both run
`treadle worker --pool=<id>`, reach Redis with the URL the namespace's Secret holds for that
pool, learn their pod's name from the downward API, and run *restricted*."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from treadle.api import GROUP, VERSION, workflows
from treadle.core import podspecs
from treadle.core.messages import secret_env_name

REDIS_SECRET = "treadle-redis"
"""The namespace's Secret of worker URLs, one key per pool (services/kube.py writes it)."""
COMPONENT_LABEL = "app.kubernetes.io/component"
WORKFLOW_LABEL = f"{GROUP}/workflow"
"""On a workflow's own worker pods: the workflow's name."""
SPEC_DIGEST = f"{GROUP}/spec-digest"
"""On a workflow's worker pod: a digest of what it was made from (a changed one is replaced)."""
WORKER_NAME_ENV = "TREADLE_WORKER_NAME"
"""A worker learns its pod's name here (the downward API): the name status shows it by."""


def container(
    *,
    pool: str,
    image: str,
    flags: Sequence[str] = (),
    env: Sequence[dict[str, Any]] = (),
    resources: dict[str, Any] | None = None,
    metrics_port: int = 0,
    mounts: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The worker container of `pool`: its command with `flags`, its Redis URL and name, then
    `env`; restricted."""
    command = ["treadle", "worker", f"--pool={pool}", *flags]
    if metrics_port:
        command.append(f"--metrics-address=0.0.0.0:{metrics_port}")
    made: dict[str, Any] = {
        "name": "worker",
        "image": image,
        "command": command,
        "env": [
            {
                "name": "TREADLE_REDIS_URL",
                "valueFrom": {"secretKeyRef": {"name": REDIS_SECRET, "key": pool}},
            },
            {"name": WORKER_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            *env,
        ],
    }
    if mounts:
        made["volumeMounts"] = list(mounts)
    made = podspecs.restricted_container(made)
    if resources:
        made["resources"] = resources
    if metrics_port:
        made["ports"] = [{"name": "metrics", "containerPort": metrics_port}]
    return made


def metrics_annotations(metrics_port: int) -> dict[str, str]:
    """What tells Prometheus to scrape a worker pod (none without a metrics port)."""
    if not metrics_port:
        return {}
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics_port)}


def workflow_pod(
    *,
    workflow_name: str,
    namespace: str,
    uid: str,
    pool: str,
    index: int,
    spec: workflows.Workers,
    default_image: str,
    secret_refs: Sequence[tuple[str, str]] = (),
    metrics_port: int = 0,
) -> dict[str, Any]:
    """A worker pod of one workflow, owned by it (garbage-collected with it).  `secret_refs`
    are the (Secret, key) pairs its HTTP headers read, passed in as environment variables;
    with a `metrics_port` the worker serves Prometheus metrics there."""
    secrets = [
        {
            "name": secret_env_name(secret, key),
            "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
        }
        for secret, key in secret_refs
    ]
    worker = container(
        pool=pool,
        image=spec.image or default_image,
        flags=[f"--reap-idle-seconds={spec.redeliver_after_seconds}"],
        env=[*secrets, *(spec.env or [])],
        resources=spec.resources,
        metrics_port=metrics_port,
    )
    annotations = metrics_annotations(metrics_port)
    # What the pod was made from: a pod made from an earlier spec (a suspended workflow's
    # `workers` edited) is replaced, not kept.
    made_from = json.dumps([worker, spec.image], sort_keys=True, default=str)
    annotations[SPEC_DIGEST] = hashlib.sha256(made_from.encode()).hexdigest()[:16]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{workflow_name}-worker-{index}",
            "namespace": namespace,
            "annotations": annotations,
            "labels": {
                WORKFLOW_LABEL: workflow_name,
                COMPONENT_LABEL: "worker",
                "app.kubernetes.io/name": "treadle",
            },
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": workflows.KIND,
                    "name": workflow_name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "restartPolicy": "Always",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 30,
            "securityContext": podspecs.restricted_pod_context(),
            "containers": [worker],
        },
    }
