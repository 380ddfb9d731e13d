"""Small values of a workflow run: the times status holds (a retry's, rounded up; a worker's
clock reading), the digest that names a forEach's items, and a task's settings with the
spec's defaults filled in."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from treadle.api import workflows
from treadle.api.workflows import Task, WorkflowSpec
from treadle.core import timestamps


def due_text(moment: datetime) -> str:
    """A retry time, rounded up to the second status can hold: never earlier than asked."""
    whole = moment.replace(microsecond=0)
    return timestamps.text(whole if whole == moment else whole + timedelta(seconds=1))


def moment_of(seconds: float) -> str | None:
    """A worker's clock reading (seconds since the epoch) as status writes times; None when
    it is unknown (0) or out of range."""
    if not 0 < seconds < 1e11:
        return None
    return timestamps.text(datetime.fromtimestamp(seconds, UTC))


def items_digest(values: list[Any]) -> str:
    """Names a forEach task's rendered items, so a second rendering is known to agree."""
    encoded = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def settings_of(spec: WorkflowSpec, task: Task) -> workflows.TaskSettings:
    defaults = spec.defaults
    return workflows.TaskSettings(
        timeout_seconds=task.timeout_seconds or defaults.timeout_seconds,
        retry=task.retry or defaults.retry or workflows.RetryPolicy(),
        circuit_breaker=task.circuit_breaker or defaults.circuit_breaker,
        rate_limit=task.rate_limit or defaults.rate_limit,
    )
