"""The validating admission webhook: bad manifests are refused at `kubectl apply`.

The verdict is the core's, the same one the operator applies when the webhook is absent
(`phase: Invalid`).  failurePolicy is Ignore: when the operator is down, applies go through and
the operator refuses invalid objects once it is back, so a dead webhook never blocks a cluster.
Updates that leave the spec alone (labels, finalizers, deletion) are never refused, so an
object admitted before the webhook existed stays editable.
"""

from __future__ import annotations

from typing import Any

import kopf

from treadle.api import GROUP, VERSION, syncjobs, workflows
from treadle.core import admission

WEBHOOK_CONFIGURATION = GROUP
OPERATIONS: list[Any] = ["CREATE", "UPDATE"]


def _spec_unchanged(spec: kopf.Spec, old: Any) -> bool:
    return old is not None and dict(old.get("spec") or {}) == dict(spec)


def validate_workflow(spec: kopf.Spec, meta: kopf.Meta, **kwargs: Any) -> None:
    if _spec_unchanged(spec, kwargs.get("old")):
        return
    workflow = {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
    }
    problems = admission.admit_workflow(dict(spec), workflow)[1]
    if problems:
        raise kopf.AdmissionError("; ".join(problems), code=422)


def validate_syncjob(spec: kopf.Spec, **kwargs: Any) -> None:
    if _spec_unchanged(spec, kwargs.get("old")):
        return
    problems = admission.syncjob_problems(dict(spec))
    if problems:
        raise kopf.AdmissionError("; ".join(problems), code=422)


def register(registry: kopf.OperatorRegistry) -> None:
    """Adds the webhook handlers; only an operator that serves the webhook has them (kopf
    refuses to start with admission handlers and no server)."""
    for plural, handler in (
        (workflows.PLURAL, validate_workflow),
        (syncjobs.PLURAL, validate_syncjob),
    ):
        kopf.on.validate(
            GROUP,
            VERSION,
            plural,
            id=handler.__name__.replace("_", "-"),
            operations=OPERATIONS,
            ignore_failures=True,
            registry=registry,
        )(handler)
