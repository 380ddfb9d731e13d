"""SyncJob handlers: admit a new or changed SyncJob and hand it to the scheduler; pass changes
of its runs (pods and Workflows), annotations (run now, reset failures, backfill) and deletions
on to it.

The handlers are coroutines: kopf runs them on the operator's event loop, beside the scheduler
whose state they change (kopf runs plain functions in threads, which would change that state
while the scheduler iterates it).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import kopf

from treadle.api import (
    BACKFILL_ANNOTATION,
    GROUP,
    RUN_NOW_ANNOTATION,
    SYNCJOB_REQUESTS,
    VERSION,
    syncjobs,
    workflows,
)
from treadle.api import RESET_FAILURES_ANNOTATION as RESET_ANNOTATION
from treadle.controllers import access, metrics
from treadle.core import runbodies, syncadmission, syncs
from treadle.handlers.registry import registry
from treadle.runtime.offload import offload
from treadle.services import kube


@kopf.on.create(GROUP, VERSION, syncjobs.PLURAL, registry=registry)
@kopf.on.update(GROUP, VERSION, syncjobs.PLURAL, field="spec", registry=registry)
@kopf.on.resume(GROUP, VERSION, syncjobs.PLURAL, registry=registry)
async def admit_syncjob(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    async with kube.client() as api:
        refused = await access.refusals(api, syncjobs.KIND, dict(spec), meta)
    current, generation = syncs.read_status(status), meta.get("generation")
    verdict = await offload(  # off the event loop, as for workflows
        functools.partial(
            syncadmission.admit_syncjob,
            dict(spec),
            current,
            generation=generation,
            now=datetime.now(UTC),
            refused=refused,
        )
    )
    if verdict.runnable is None:
        metrics.ADMISSIONS.labels(kind=syncjobs.KIND, phase="Invalid").inc()
        patch.status.update(verdict.status or {})
        kopf.warn(body, reason="Invalid", message=verdict.message)
        return
    metrics.ADMISSIONS.labels(kind=syncjobs.KIND, phase="Scheduled").inc()
    if (
        name := syncadmission.template_to_record(verdict.runnable, current, generation)
    ) is not None:
        async with kube.client() as api:
            template = await kube.template_spec(api, str(meta.get("namespace")), name)
        current = syncadmission.with_template_secrets(current, template, generation)
        patch.status["templateSecrets"] = syncs.wire(current)["templateSecrets"]
    scheduler = getattr(memo, "scheduler", None)
    if scheduler is not None:
        scheduler.track(dict(body), verdict.runnable, current)


@kopf.on.event(
    GROUP,
    VERSION,
    syncjobs.PLURAL,
    annotations={RUN_NOW_ANNOTATION: kopf.PRESENT},
    registry=registry,
)
@kopf.on.event(
    GROUP, VERSION, syncjobs.PLURAL, annotations={RESET_ANNOTATION: kopf.PRESENT}, registry=registry
)
@kopf.on.event(
    GROUP,
    VERSION,
    syncjobs.PLURAL,
    annotations={BACKFILL_ANNOTATION: kopf.PRESENT},
    registry=registry,
)
async def syncjob_requested(type: str | None, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    scheduler = getattr(memo, "scheduler", None)
    if scheduler is None or type == "DELETED":
        return
    annotations = meta.get("annotations") or {}
    for annotation in SYNCJOB_REQUESTS:
        if annotation in annotations:
            scheduler.request(
                meta["uid"],
                annotation,
                str(annotations[annotation]),
                str(meta.get("resourceVersion", "")),
            )


@kopf.on.event(GROUP, VERSION, syncjobs.PLURAL, registry=registry)
async def syncjob_gone(type: str | None, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    scheduler = getattr(memo, "scheduler", None)
    if scheduler is not None and type == "DELETED":
        scheduler.forget(meta["uid"])


@kopf.on.event(
    "v1",
    "pods",
    labels={runbodies.LABEL_SYNCJOB: kopf.PRESENT, kube.LABEL_COMPONENT: "sync-run"},
    registry=registry,
)
@kopf.on.event(
    GROUP,
    VERSION,
    workflows.PLURAL,
    labels={runbodies.LABEL_SYNCJOB: kopf.PRESENT, kube.LABEL_COMPONENT: "sync-run"},
    registry=registry,
)
async def run_changed(
    type: str | None, body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> None:
    """A run's pod or Workflow changed: its phase goes to the scheduler (None: it is gone)."""
    scheduler = getattr(memo, "scheduler", None)
    if scheduler is None:
        return
    kind = runbodies.WORKFLOW if body.get("kind") == workflows.KIND else runbodies.POD
    phase = (
        None
        if type == "DELETED"
        else runbodies.phase_of(kind, (body.get("status") or {}).get("phase"))
    )
    _tell_owner(scheduler, meta, phase)


def _tell_owner(scheduler: Any, meta: kopf.Meta, phase: str | None) -> None:
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == syncjobs.KIND:
            scheduler.run_changed(owner["uid"], meta["name"], phase)
