"""Workflow handlers: admit a new or changed Workflow, then hand it to the engine driver."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from treadle.api import GROUP, VERSION, workflows
from treadle.core import admission
from treadle.handlers import metrics
from treadle.handlers.registry import registry


@kopf.on.create(GROUP, VERSION, workflows.PLURAL, registry=registry)
@kopf.on.update(GROUP, VERSION, workflows.PLURAL, field="spec", registry=registry)
@kopf.on.resume(GROUP, VERSION, workflows.PLURAL, registry=registry)
def admit_workflow(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    workflow = {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
    }
    verdict = admission.admit(
        dict(spec),
        dict(status),
        generation=meta.get("generation"),
        now=datetime.now(UTC),
        workflow=workflow,
    )
    current = dict(status)
    if verdict.status is not None:
        metrics.ADMISSIONS.labels(kind=workflows.KIND, phase=verdict.status["phase"]).inc()
        patch.status.update(verdict.status)
        current = verdict.status
    driver = getattr(memo, "driver", None)
    if driver is not None and verdict.runnable is not None:
        driver.track(dict(body), verdict.runnable, current)
