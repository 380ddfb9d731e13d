"""Workflow handlers: admit a new or changed Workflow and hand it to the engine driver; pass
manual retry requests and deletions on to the driver.

The handlers are coroutines: kopf runs them on the operator's event loop, beside the driver
whose state they change (kopf runs plain functions in threads, which would change that state
while the driver iterates it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from treadle.api import GROUP, RETRY_ANNOTATION, VERSION, workflows
from treadle.controllers import access, metrics
from treadle.core import admission, engine, patches, templates
from treadle.handlers import pools
from treadle.handlers.registry import registry
from treadle.runtime.offload import offload
from treadle.services import kube


@kopf.on.create(GROUP, VERSION, workflows.PLURAL, registry=registry)
@kopf.on.update(GROUP, VERSION, workflows.PLURAL, field="spec", registry=registry)
@kopf.on.resume(GROUP, VERSION, workflows.PLURAL, registry=registry)
async def admit_workflow(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    default_pool = pools.has_default(kwargs.get("pool_names"), str(meta.get("namespace")))
    template = None
    wanted = admission.template_wanted(dict(spec), dict(status), meta.get("generation"))
    if wanted is not None:
        async with kube.client() as api:
            template = await kube.template_spec(api, str(meta.get("namespace")), wanted)
    refused: list[str] = []
    if admission.is_new_generation(dict(status), meta.get("generation")):
        used = templates.effective(dict(spec), template) if template is not None else dict(spec)
        async with kube.client() as api:
            refused = await access.refusals(api, workflows.KIND, used, meta)
    # Off the event loop: the spec's templates are the tenant's (bounded, but not free).
    verdict = await offload(_admit, spec, status, meta, default_pool, template, refused)
    current = verdict.status
    if current is not None:
        metrics.ADMISSIONS.labels(kind=workflows.KIND, phase=current.phase).inc()
        # A run started again (or an invalid spec) keeps none of the earlier run's tasks,
        # dead letters or times: the patch removes what the new status does not have.
        patch.status.update(patches.merge_patch(dict(status), current.wire()))
        if verdict.restarted:
            kopf.warn(body, reason="SpecChanged", message=current.message or "")
        if current.phase == "Invalid":
            kopf.warn(body, reason="Invalid", message=current.message or "")
    driver = getattr(memo, "driver", None)
    if driver is not None and verdict.runnable is not None and verdict.current is not None:
        driver.track(dict(body), verdict.runnable, verdict.current)


@kopf.on.event(
    GROUP,
    VERSION,
    workflows.PLURAL,
    annotations={RETRY_ANNOTATION: kopf.PRESENT},
    registry=registry,
)
async def retry_requested(
    type: str | None,
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """`treadle.dev/retry: <task>|all`: the driver re-queues the dead-lettered work (a Failed
    workflow is no longer tracked, so it is taken up again first)."""
    driver = getattr(memo, "driver", None)
    if driver is None or type == "DELETED":
        return
    uid = meta["uid"]
    if not driver.tracks(uid):
        found = admission.retryable(dict(spec), dict(status), engine.Identity.of(meta).context)
        if found is None:
            return  # an invalid workflow never ran: nothing to retry
        driver.track(dict(body), *found)
    target = str(meta.get("annotations", {}).get(RETRY_ANNOTATION, "")).strip() or "all"
    driver.request_retry(uid, target, str(meta.get("resourceVersion", "")))


@kopf.on.event(GROUP, VERSION, workflows.PLURAL, registry=registry)
async def workflow_gone(
    type: str | None, body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> None:
    driver = getattr(memo, "driver", None)
    if driver is not None and type == "DELETED":
        used, own = admission.task_pools_of(body.get("spec"), body.get("status"), meta)
        driver.deleted(meta["uid"], meta["namespace"], {own, *used.values()})


def _admit(
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    default_pool: bool,
    template: dict[str, Any] | None,
    refused: list[str],
) -> admission.Admission:
    return admission.admit(
        dict(spec),
        dict(status),
        generation=meta.get("generation"),
        now=datetime.now(UTC),
        workflow=engine.Identity.of(meta).context,
        default_pool=default_pool,
        template=template,
        refused=refused,
    )
