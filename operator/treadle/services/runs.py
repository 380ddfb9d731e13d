"""The pods SyncJob runs are: built from the job's template, named after the job and the slot
(so a slot can never start twice: a second create is a 409), restricted, without a token."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Pod

from treadle.api import GROUP, VERSION, syncjobs
from treadle.api.syncjobs import SyncJobSpec
from treadle.core import gates, podspecs, timestamps
from treadle.services.kube import LABEL_COMPONENT

LABEL_SYNCJOB = f"{GROUP}/syncjob"
SLOT_ANNOTATION = f"{GROUP}/slot"
LOCKS_ANNOTATION = f"{GROUP}/locks"
NAME_LIMIT = 63


def run_name(job: str, moment: datetime, *, manual: bool = False) -> str:
    """`<job>-<slot as yyyymmddhhmmss>` (or `<job>-manual-<time>`), shortened with a hash when
    the job's name is long."""
    suffix = ("manual-" if manual else "") + moment.strftime("%Y%m%d%H%M%S")
    name = f"{job}-{suffix}"
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha256(job.encode()).hexdigest()[:8]
    keep = NAME_LIMIT - len(suffix) - len(digest) - 2
    return f"{job[:keep].rstrip('-.')}-{digest}-{suffix}"


def run_pod(
    *,
    job: str,
    namespace: str,
    uid: str,
    spec: SyncJobSpec,
    name: str,
    slot: datetime,
    locks: Sequence[tuple[str, int]],
) -> dict[str, Any]:
    """The run's pod: the template with Treadle's labels, owner, and restricted security; the
    locks it runs under (with their fencing tokens) are recorded on it."""
    template = copy.deepcopy(spec.template.model_dump(by_alias=True, exclude_none=True))
    metadata = template.get("metadata") or {}
    pod_spec = template["spec"]
    told = run_env(slot, locks)
    pod_spec.update(
        restartPolicy="Never",
        automountServiceAccountToken=False,
        containers=[
            _with_env(podspecs.restricted_container(c), told)
            for c in pod_spec.get("containers") or []
        ],
        securityContext=podspecs.restricted_pod_context(pod_spec.get("securityContext")),
    )
    if pod_spec.get("initContainers"):
        pod_spec["initContainers"] = [
            _with_env(podspecs.restricted_container(c), told) for c in pod_spec["initContainers"]
        ]
    if spec.active_deadline_seconds is not None:
        pod_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                **(metadata.get("labels") or {}),
                LABEL_SYNCJOB: job,
                LABEL_COMPONENT: "sync-run",
                "app.kubernetes.io/name": "treadle",
            },
            "annotations": {
                **(metadata.get("annotations") or {}),
                SLOT_ANNOTATION: timestamps.text(slot),
                LOCKS_ANNOTATION: json.dumps(dict(locks), sort_keys=True),
            },
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": syncjobs.KIND,
                    "name": job,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": pod_spec,
    }


def run_env(slot: datetime, locks: Sequence[tuple[str, int]]) -> list[dict[str, str]]:
    """What a run is told: its slot, and the fencing tokens of the locks it runs under, to pass
    to the systems it writes to (a write bearing a token older than the newest one seen comes
    from a run whose lock lapsed, and can be refused there).  TREADLE_FENCING_TOKEN is the
    pipeline lock's; TREADLE_FENCING_TOKENS holds every lock's, as JSON."""
    env = [{"name": "TREADLE_SLOT", "value": timestamps.text(slot)}]
    pipeline = [token for name, token in locks if name.startswith(gates.PIPELINE_PREFIX)]
    if pipeline:
        env.append({"name": "TREADLE_FENCING_TOKEN", "value": str(pipeline[0])})
    if locks:
        tokens = json.dumps(dict(locks), sort_keys=True)
        env.append({"name": "TREADLE_FENCING_TOKENS", "value": tokens})
    return env


def _with_env(container: dict[str, Any], env: list[dict[str, str]]) -> dict[str, Any]:
    """The container with Treadle's variables (users may not set TREADLE_ names: the
    admission refuses them, so these are the only ones)."""
    return {**container, "env": [*(container.get("env") or []), *env]}


async def create_run(api: AsyncClient, body: dict[str, Any]) -> bool:
    """Creates the run's pod; False when it exists already (this slot's run was started)."""
    try:
        pod: Pod = Pod.from_dict(body)  # type: ignore[assignment]
        await api.create(pod)
    except ApiError as error:
        if error.status.code == 409:
            return False
        raise
    return True


async def run_phase(api: AsyncClient, namespace: str, name: str) -> str | None:
    """The run pod's phase; None when the pod does not exist."""
    try:
        pod = await api.get(Pod, name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            return None
        raise
    return pod.status.phase if pod.status else "Pending"


async def delete_run(api: AsyncClient, namespace: str, name: str) -> None:
    try:
        await api.delete(Pod, name, namespace=namespace)
    except ApiError as error:
        if error.status.code != 404:
            raise


async def prune_runs(
    api: AsyncClient, namespace: str, job: str, *, keep_succeeded: int, keep_failed: int
) -> int:
    """Deletes finished run pods beyond the history limits, oldest first; returns how many."""
    pods = [
        pod
        async for pod in api.list(Pod, namespace=namespace, labels={LABEL_SYNCJOB: job})
        if pod.status is not None and pod.status.phase in ("Succeeded", "Failed")
    ]
    pruned = 0
    for phase, keep in (("Succeeded", keep_succeeded), ("Failed", keep_failed)):
        finished = sorted(
            (p for p in pods if p.status is not None and p.status.phase == phase),
            key=lambda p: (p.metadata.creationTimestamp if p.metadata else None) or datetime.min,
        )
        for pod in finished[: max(0, len(finished) - keep)]:
            if pod.metadata and pod.metadata.name:
                await delete_run(api, namespace, pod.metadata.name)
                pruned += 1
    return pruned
