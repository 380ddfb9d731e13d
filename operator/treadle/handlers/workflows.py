"""Workflow handlers: admit a new or changed Workflow into the status the core computes."""

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
    spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any
) -> None:
    generation = meta.get("generation")
    current = dict(status)
    if current.get("observedGeneration") == generation and current.get("phase"):
        return  # resumed with nothing new to admit
    new_status = admission.workflow_status(
        dict(spec),
        current,
        generation=generation,
        now=datetime.now(UTC),
        workflow={
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
    )
    metrics.ADMISSIONS.labels(kind=workflows.KIND, phase=new_status["phase"]).inc()
    patch.status.update(new_status)
