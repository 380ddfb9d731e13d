"""Edits of a Workflow once its run has begun: only MUTABLE_FIELDS may change (as a Job's
template, the rest is fixed), told apart by a digest of the rest.  Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from treadle.api import workflows

MUTABLE_FIELDS = ("suspend", "shutdown", "activeDeadlineSeconds")
"""The only spec fields of a started workflow that may change (SPEC: like a Job's template,
the rest is fixed once it runs)."""


def spec_hash(spec: Mapping[str, Any]) -> str:
    """Digest of the spec without MUTABLE_FIELDS, to tell an allowed edit from a change."""
    fixed = {key: value for key, value in spec.items() if key not in MUTABLE_FIELDS}
    encoded = json.dumps(fixed, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()[:16]


def has_started(status: workflows.WorkflowStatus | Mapping[str, Any] | None) -> bool:
    """Whether a workflow's run has begun (an attempt was enqueued, or it ended)."""
    if not isinstance(status, workflows.WorkflowStatus):
        current = status or {}
        started, phase = current.get("startedAt"), current.get("phase")
    else:
        started, phase = status.started_at, status.phase
    return bool(started) or phase in ("Running", *workflows.ENDED_PHASES)


def immutable_change(old_spec: Mapping[str, Any], new_spec: Mapping[str, Any]) -> list[str]:
    """The fields, other than MUTABLE_FIELDS, that differ between two specs."""
    keys = (set(old_spec) | set(new_spec)) - set(MUTABLE_FIELDS)
    return sorted(key for key in keys if old_spec.get(key) != new_spec.get(key))


def edit_problem(old: Mapping[str, Any] | None, new_spec: Mapping[str, Any]) -> str | None:
    """Why an update of a workflow (`old`: the object before it) is refused, or None: once a
    run has started only MUTABLE_FIELDS may change."""
    if old is None or not has_started(old.get("status")):
        return None
    changed = immutable_change(dict(old.get("spec") or {}), new_spec)
    if not changed:
        return None
    return (
        f"spec.{changed[0]}: a started workflow's spec cannot change (only "
        f"{', '.join(MUTABLE_FIELDS)} may); to run it with another spec, create a new Workflow "
        "(metadata.generateName makes a fresh name each time)"
    )
