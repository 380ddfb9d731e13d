"""The status budget (SPEC, Limits and bad input): how much of a workflow's status outputs,
errors and dead letters may take, and the last guard that keeps it under etcd's limit."""

from __future__ import annotations

import json
from typing import Any

from treadle.api.workflows import WorkflowStatus
from treadle.core.messages import INLINE_OUTPUT_LIMIT_BYTES

OUTPUT_LIMIT_BYTES = INLINE_OUTPUT_LIMIT_BYTES
"""Largest output kept in status per task.  Workers store every output in Redis and report a
reference (`outputRef`); the driver reads them back for templates.  A larger output that
arrives inline anyway is cut to a note."""
INLINE_BUDGET_BYTES = 64 * 1024
"""What all of a workflow's inline outputs may take in status together."""
ERROR_CHARS = 512
"""The longest error status keeps per task or dead letter (the worker's report is longer)."""
DEAD_LETTERS_KEPT = 50
"""Dead letters status lists (the newest); `deadLetterCount` counts them all."""
STATUS_LIMIT_BYTES = 256 * 1024
"""SPEC: a workflow's status stays under this whatever the spec; a status that would not is
compacted further (errors shortened, fewer dead letters listed) and, failing that, the
workflow fails saying so, rather than meeting etcd's limit with a status write that never
succeeds."""


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def short(error: str, limit: int = ERROR_CHARS) -> str:
    return error if len(error) <= limit else error[: limit - 1] + "…"


def status_size(status: WorkflowStatus) -> int:
    """Bytes of status as written (its JSON, unset fields left out)."""
    return len(status.model_dump_json(exclude_none=True))


def fit(status: WorkflowStatus, *, last_resort: bool = False) -> bool:
    """Compacts status in place when it is over STATUS_LIMIT_BYTES: errors are cut to 80 chars
    and only the newest 5 dead letters stay listed (then, as a last resort, inline outputs go:
    their stored copies remain).  False when it still does not fit."""
    if status_size(status) < STATUS_LIMIT_BYTES:
        return True
    status.dead_letters = [
        letter.model_copy(update={"error": short(letter.error, 80)})
        for letter in status.dead_letters[-5:]
    ]
    for entry in status.tasks.values():
        if entry.error is not None:
            entry.error = short(entry.error, 80)
    if last_resort:
        for entry in status.tasks.values():
            if entry.output is not None:
                entry.output = {"truncated": True, "bytes": json_size(entry.output)}
            entry.item_attempts = entry.item_attempt_base = entry.retry_at = None
    return status_size(status) < STATUS_LIMIT_BYTES
