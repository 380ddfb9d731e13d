"""Workflow handlers: admit a new or changed Workflow, then hand it to the engine driver."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from treadle.api import GROUP, VERSION, workflows
from treadle.core import admission
from treadle.handlers import metrics
from treadle.handlers.registry import registry

FINAL = ("Succeeded", "Failed", "Invalid")


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
    generation = meta.get("generation")
    current = dict(status)
    workflow = {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
    }
    if current.get("observedGeneration") != generation or not current.get("phase"):
        current = admission.workflow_status(
            dict(spec), current, generation=generation, now=datetime.now(UTC), workflow=workflow
        )
        metrics.ADMISSIONS.labels(kind=workflows.KIND, phase=current["phase"]).inc()
        patch.status.update(current)
    driver = getattr(memo, "driver", None)
    if driver is None or current.get("phase") in FINAL:
        return
    parsed = admission.admit_workflow(dict(spec), workflow)[0]
    if parsed is not None:
        driver.track(dict(body), parsed, current)
