"""WorkerPool handlers: admit a new or changed pool and hand it to the pool keeper; tell the
keeper when one is deleted.  The index lets the workflow handlers know, before any of them runs,
which namespaces have a `default` pool (kopf fills every index before it starts handlers)."""

from __future__ import annotations

from typing import Any

import kopf

from treadle.api import GROUP, VERSION, pools
from treadle.controllers import access, metrics
from treadle.core import admission
from treadle.handlers.registry import registry
from treadle.services import kube


@kopf.index(GROUP, VERSION, pools.PLURAL, registry=registry)
async def pool_names(name: str, namespace: str | None, **_: Any) -> dict[str, str]:
    """The pools of each namespace, by name."""
    return {namespace or "": name}


@kopf.on.create(GROUP, VERSION, pools.PLURAL, registry=registry)
@kopf.on.update(GROUP, VERSION, pools.PLURAL, field="spec", registry=registry)
@kopf.on.resume(GROUP, VERSION, pools.PLURAL, registry=registry)
async def admit_pool(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    parsed, problems = admission.admit_pool(dict(spec), str(meta.get("name")))
    if parsed is not None:  # its Secrets are mounted for every workflow of the pool
        async with kube.client() as api:
            problems = await access.refusals(api, pools.KIND, dict(spec), meta)
        parsed = None if problems else parsed
    metrics.ADMISSIONS.labels(kind=pools.KIND, phase="Invalid" if problems else "Ready").inc()
    if problems:
        kopf.warn(body, reason="Invalid", message="; ".join(problems))
    keeper = getattr(memo, "pools", None)
    if keeper is not None:
        keeper.track(dict(meta), parsed, "; ".join(problems) or None, dict(status))


@kopf.on.event(GROUP, VERSION, pools.PLURAL, registry=registry)
async def pool_gone(type: str | None, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    keeper = getattr(memo, "pools", None)
    if keeper is not None and type == "DELETED":
        keeper.forget(meta["namespace"], meta["name"])


def has_default(index: kopf.Index[str, str] | None, namespace: str) -> bool:
    """Whether the namespace has a pool named `default` (`index`: the `pool_names` index)."""
    return index is not None and pools.DEFAULT_POOL in index.get(namespace, ())
