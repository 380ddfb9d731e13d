"""The Kubernetes side of `job` tasks: the batch/v1 Jobs of their attempts (made, read, marked,
deleted) and their pods' logs.  Bodies and judgements are treadle.core.jobs's."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

import httpx2 as httpx
from lightkube import ApiError, AsyncClient
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod
from lightkube.types import CascadeType, PatchType

from treadle.core import jobs
from treadle.services.kube import FIELD_MANAGER

log = logging.getLogger(__name__)


async def create(api: AsyncClient, body: dict[str, Any]) -> dict[str, Any] | None:
    """Makes an attempt's Job; None when it was made, else the Job found under its name (made
    before by this attempt, or by someone else: the caller reads its claim)."""
    meta = body["metadata"]
    try:
        await api.create(Job.from_dict(body), field_manager=FIELD_MANAGER)  # type: ignore[call-overload]
        return None
    except ApiError as error:
        if error.status.code != 409:
            raise
    found = await get(api, meta["namespace"], meta["name"])
    return found if found is not None else await create(api, body)


def refusal(error: ApiError) -> str | None:
    """Why the API server refused a Job for good (invalid, too large, forbidden), or None when
    asking again may succeed (a conflict, too many requests, a server error)."""
    code = error.status.code or 0
    if 400 <= code < 500 and code not in (408, 409, 429):
        return str(error.status.message or error)[:1000]
    return None


async def get(api: AsyncClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        job = await api.get(Job, name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            return None
        raise
    found: dict[str, Any] = job.to_dict()
    return found


async def mark_reported(api: AsyncClient, namespace: str, name: str, outcome: str) -> None:
    """Records on the Job that its attempt's end is published (a restarted operator skips it)."""
    patch = {"metadata": {"annotations": {jobs.REPORTED_ANNOTATION: outcome}}}
    try:
        await api.patch(
            Job,
            name,
            patch,
            namespace=namespace,
            patch_type=PatchType.MERGE,
            field_manager=FIELD_MANAGER,
        )
    except ApiError as error:
        if error.status.code != 404:
            raise


async def delete(api: AsyncClient, namespace: str, name: str) -> None:
    """Deletes a Job and its pods (their processes get SIGTERM, then SIGKILL after the grace
    period)."""
    try:
        await api.delete(Job, name, namespace=namespace, cascade=CascadeType.BACKGROUND)
    except ApiError as error:
        if error.status.code != 404:
            raise


async def delete_pod(api: AsyncClient, namespace: str, name: str) -> None:
    """Deletes a job's pod that cannot start (an Indexed Job then counts its child failed)."""
    try:
        await api.delete(Pod, name, namespace=namespace)
    except ApiError as error:
        if error.status.code != 404:
            raise


async def delete_running(
    api: AsyncClient, namespace: str, workflow_uid: str, tasks: Collection[str]
) -> int:
    """Deletes a workflow's Jobs of `tasks` that have not ended (terminate); returns how many."""
    selector: dict[str, Any] = {jobs.WORKFLOW_UID_LABEL: workflow_uid}
    deleted = 0
    async for job in api.list(Job, namespace=namespace, labels=selector):
        meta = job.metadata
        status = job.status
        labels = (meta.labels if meta else None) or {}
        ended = status is not None and (status.succeeded or status.failed) and not status.active
        if meta is None or ended or labels.get(jobs.TASK_LABEL) not in tasks:
            continue
        await delete(api, namespace, str(meta.name))
        deleted += 1
    return deleted


async def read_log(
    api: AsyncClient, namespace: str, pod: str, limit_bytes: int, *, tail_lines: int | None = None
) -> tuple[str, bool] | None:
    """The first `limit_bytes` of a job pod's log (or of its last `tail_lines`), and whether
    that is all of it; None when the pod or its log is gone.  Read as a stream and cut at the
    limit, whatever the node sends."""
    params: dict[str, Any] = {"container": jobs.CONTAINER, "limitBytes": str(limit_bytes + 1)}
    if tail_lines is not None:
        params["tailLines"] = str(tail_lines)
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
    kept = bytearray()
    try:
        async with api._client._client.stream("GET", path, params=params) as response:
            if response.status_code in (400, 404):
                return None
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                kept += chunk
                if len(kept) > limit_bytes:
                    break
    except httpx.HTTPError as error:
        log.warning("reading the log of pod %s/%s: %s", namespace, pod, error)
        return None
    return kept[:limit_bytes].decode(errors="replace"), len(kept) <= limit_bytes


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return (obj.get("metadata") or {}).get("labels") or {}
