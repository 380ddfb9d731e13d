"""SyncJob admission: a SyncJob's problems at apply time (schema, schedule, time zone, its run
pod's fields, its Workflow run as the Workflow it would make), and the Secrets its
WorkflowTemplate reads (recorded when it is applied; a run whose template reads another is
refused).  Pure; the workflow side is core/admission.py."""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from treadle.api import syncjobs, workflows
from treadle.core import admission, conditions, podspecs, secretrefs, slots, syncruns, templates

UNCHECKED: Any = object()
"""`template` of a SyncJob check that leaves its WorkflowTemplate alone (the operator's: the
run's Workflow is checked when it is made)."""


def syncjob_problems(spec: Any, template: Mapping[str, Any] | None = UNCHECKED) -> list[str]:
    """A SyncJob's problems: the schema's, then an unparsable schedule or unknown time zone,
    then its run's (a pod's, or a Workflow's as one made of it would have; `template`: the
    WorkflowTemplate it runs, None when there is none)."""
    return _check_syncjob(spec, template)[1]


def _check_syncjob(
    spec: Any, template: Mapping[str, Any] | None = UNCHECKED
) -> tuple[syncjobs.SyncJobSpec | None, list[str]]:
    parsed, problems = admission.parse(syncjobs.SyncJobSpec, spec)
    if parsed is None:
        return None, problems
    try:
        zoneinfo.ZoneInfo(parsed.time_zone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(f"spec.timeZone: unknown time zone {parsed.time_zone!r} (an IANA name)")
    try:
        slots.Schedule(parsed.schedule)
    except slots.ScheduleError as error:
        problems.append(f"spec.schedule: {error}")
    if parsed.template is not None:
        problems += podspecs.pod_problems(parsed.template.spec, "spec.template.spec")
        for name in sorted(set(parsed.template.metadata or {}) - {"labels", "annotations"}):
            problems.append(
                f"spec.template.metadata.{name}: not allowed (labels and annotations are)"
            )
    if parsed.workflow is not None:
        problems += _workflow_run_problems(dict(spec)["workflow"], template)
    return (None, problems) if problems else (parsed, [])


def _workflow_run_problems(run: Mapping[str, Any], template: Mapping[str, Any] | None) -> list[str]:
    """A SyncJob's Workflow run: its params render, and a Workflow of it would be admitted."""
    found = syncruns.problems(run)
    if found:
        return found
    body = syncruns.workflow_spec(run, syncruns.SAMPLE)
    identity = {"name": "", "namespace": "", "uid": ""}
    if templates.ref_name(body) is None:
        return [
            secretrefs.under(p, "spec.workflow.spec.")
            for p in admission.admit_workflow(body, identity)[1]
        ]
    if template is UNCHECKED:
        return []
    return [
        secretrefs.under(p, "spec.workflow.")
        for p in admission.admit_workflow(body, identity, template)[1]
    ]


def template_secrets(template: Mapping[str, Any] | None) -> list[str]:
    """The names of the Secrets a WorkflowTemplate's spec reads."""
    return sorted({name for name, _ in secretrefs.secrets_named(workflows.KIND, template)})


def template_to_record(
    spec: syncjobs.SyncJobSpec, status: syncjobs.SyncJobStatus, generation: int | None
) -> str | None:
    """The WorkflowTemplate whose Secrets to record for this generation of a SyncJob (once:
    the webhook checked the applying user for those a moment ago), or None."""
    ref = spec.workflow.workflow_template_ref if spec.workflow is not None else None
    recorded = status.template_secrets
    if ref is None or (recorded is not None and recorded.generation == generation):
        return None
    return ref.name


def with_template_secrets(
    status: syncjobs.SyncJobStatus, template: Mapping[str, Any] | None, generation: int | None
) -> syncjobs.SyncJobStatus:
    """The status recording the Secrets `template` reads, for this generation of the job."""
    recorded = syncjobs.TemplateSecrets(generation=generation, names=template_secrets(template))
    return status.model_copy(update={"template_secrets": recorded})


def new_template_secrets(
    template: Mapping[str, Any] | None, allowed: Sequence[str], name: str
) -> str | None:
    """Why a run of WorkflowTemplate `name` may not be made: it reads a Secret it did not read
    when the SyncJob was applied (whose user was checked only for those)."""
    added = sorted(set(template_secrets(template)) - set(allowed))
    if not added:
        return None
    return (
        f"WorkflowTemplate {name!r} now reads Secret {added[0]!r}, which it did not when this "
        "SyncJob was applied (apply the SyncJob again to run it with that Secret)"
    )


@dataclass(frozen=True)
class SyncJobAdmission:
    status: dict[str, Any] | None
    """Status to write: the conditions of an invalid job (None for a valid one)."""
    runnable: syncjobs.SyncJobSpec | None
    """The parsed spec of a valid job, for the scheduler."""
    message: str = ""


def admit_syncjob(
    spec: Any,
    status: syncjobs.SyncJobStatus | None,
    *,
    generation: int | None,
    now: datetime,
    refused: Sequence[str] = (),
) -> SyncJobAdmission:
    """A created, changed or resumed SyncJob: its parsed spec, or the conditions that say why
    it is invalid (nothing of it ever runs); `refused` as for `admit`."""
    parsed, problems = _check_syncjob(spec)
    if refused:
        parsed, problems = None, [*problems, *refused]
    if parsed is not None:
        return SyncJobAdmission(None, parsed)
    message = "; ".join(problems)
    found = conditions.invalid(
        status.conditions if status is not None else [],
        message,
        generation=generation,
        now=now,
    )
    wired = conditions.wire(found)
    return SyncJobAdmission({"conditions": wired, "observedGeneration": generation}, None, message)
