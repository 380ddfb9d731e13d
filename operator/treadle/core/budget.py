"""The status budget (SPEC, Limits and bad input): how much of a workflow's status outputs,
errors and dead letters may take, and the last guard that keeps it under etcd's limit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

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


def status_size(status: Mapping[str, Any]) -> int:
    """Bytes the status takes as the API server stores it (JSON)."""
    return json_size(status)


def fit(status: dict[str, Any], *, last_resort: bool = False) -> bool:
    """Keeps status under STATUS_LIMIT_BYTES: when it is not, errors are cut to 80 characters
    and only the newest 5 dead letters stay listed (then, as a last resort, inline outputs go:
    their stored copies remain).  False when it still does not fit."""
    if status_size(status) < STATUS_LIMIT_BYTES:
        return True
    letters = status.get("deadLetters") or []
    del letters[:-5]
    for entry in [*status.get("tasks", {}).values(), *letters]:
        if isinstance(entry.get("error"), str):
            entry["error"] = short(entry["error"], 80)
    if last_resort:
        for entry in status.get("tasks", {}).values():
            if "output" in entry:
                entry["output"] = {"truncated": True, "bytes": json_size(entry["output"])}
        for entry in status.get("tasks", {}).values():
            for key in ("itemAttempts", "itemAttemptBase", "retryAt"):
                entry.pop(key, None)
    return status_size(status) < STATUS_LIMIT_BYTES
