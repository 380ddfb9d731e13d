"""Kubernetes API calls of the worker pools: each pool's Deployment (made, changed, scaled,
read back), its status, and the pools the webhook looks up.  The manifests are decided in
treadle.core.pools; this module only carries them out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType

from treadle.api import GROUP, VERSION, pools
from treadle.api.pools import WorkerPoolSpec
from treadle.core.pools import Rollout
from treadle.services import statuses

WorkerPool = create_namespaced_resource(GROUP, VERSION, pools.KIND, pools.PLURAL)


async def apply(api: AsyncClient, manifest: Mapping[str, Any], owner_uid: str) -> Rollout:
    """Makes or changes a pool's Deployment to `manifest` (a server-side apply), unless a
    Deployment of that name is not the pool's: it is left alone and named in the answer."""
    meta = manifest["metadata"]
    found = await _get(api, meta["namespace"], meta["name"])
    if found is not None and not _owned_by(found, owner_uid):
        return Rollout(theirs=f"Deployment {meta['name']} exists and is not this pool's")
    applied = await api.patch(
        Deployment,
        meta["name"],
        dict(manifest),
        namespace=meta["namespace"],
        patch_type=PatchType.APPLY,
        force=True,
    )
    return rollout_of(applied)


async def look(api: AsyncClient, namespace: str, name: str, owner_uid: str) -> Rollout | None:
    """The pool's Deployment as it stands (None: there is none)."""
    found = await _get(api, namespace, name)
    if found is None:
        return None
    if not _owned_by(found, owner_uid):
        return Rollout(theirs=f"Deployment {name} exists and is not this pool's")
    return rollout_of(found)


def rollout_of(deployment: Deployment) -> Rollout:
    status = deployment.status
    if status is None:
        return Rollout()
    stalled = None
    for condition in status.conditions or []:
        if condition.type == "Progressing" and condition.status == "False":
            stalled = f"{condition.reason}: {condition.message or ''}".rstrip(": ")
    return Rollout(
        ready=status.readyReplicas or 0, updated=status.updatedReplicas or 0, stalled=stalled
    )


async def _get(api: AsyncClient, namespace: str, name: str) -> Deployment | None:
    try:
        return await api.get(Deployment, name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            return None
        raise


def _owned_by(deployment: Deployment, uid: str) -> bool:
    owners = deployment.metadata.ownerReferences if deployment.metadata else None
    return any(owner.uid == uid for owner in owners or [])


async def patch_status(
    api: AsyncClient, namespace: str, name: str, status: Mapping[str, Any]
) -> bool:
    """Merge-patches a pool's status; False when the pool is gone."""
    return await statuses.patch_status(api, WorkerPool, namespace, name, status)


async def specs(api: AsyncClient, namespace: str) -> dict[str, WorkerPoolSpec]:
    """The namespace's pools by name, with the specs that parse (for the webhook)."""
    found: dict[str, WorkerPoolSpec] = {}
    async for pool in api.list(WorkerPool, namespace=namespace):
        name = pool.metadata.name if pool.metadata else None
        try:
            spec = WorkerPoolSpec.model_validate(pool.get("spec") or {})
        except ValueError:
            continue
        if name:
            found[name] = spec
    return found
