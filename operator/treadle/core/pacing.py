"""When the workflow driver writes a workflow's status, looks at its pods, and advances it
again: the driver's timing decisions, pure, so they are tested with plain asserts."""

from __future__ import annotations

from datetime import datetime, timedelta

WRITE_INTERVAL = timedelta(seconds=1)
"""A workflow's status is written at most this often (and at once when it finishes)."""
POD_CHECK_INTERVAL = timedelta(seconds=30)
"""How often a running workflow's worker pods (and its pool's Redis user) are looked at."""


def write_now(
    *, finished: bool, retry_asked: bool, written_at: datetime | None, now: datetime
) -> bool:
    """Whether this advance writes status: at once when the workflow ends, a manual retry was
    asked (its annotation goes only after the write) or nothing was written yet; else at most
    once a WRITE_INTERVAL, never once per task."""
    return finished or retry_asked or written_at is None or now - written_at >= WRITE_INTERVAL


def pods_due(checked_at: datetime | None, now: datetime) -> bool:
    return checked_at is None or now - checked_at >= POD_CHECK_INTERVAL


def next_advance(
    *,
    now: datetime,
    wake_at: datetime | None,
    wants_outputs: bool,
    unwritten_since: datetime | None,
) -> datetime:
    """When a running workflow is advanced again without new results: its next retry or
    deadline (`wake_at`), the next pod check, at once when it waits for stored outputs, and the
    end of the write interval when applied results wait for their write (`unwritten_since`: the
    last write, when something was applied after it)."""
    moments = [now + POD_CHECK_INTERVAL]
    if wants_outputs:
        moments.append(now)
    if wake_at is not None:
        moments.append(wake_at)
    if unwritten_since is not None:
        moments.append(unwritten_since + WRITE_INTERVAL)
    return min(moments)


def ttl_due(ttl_seconds: int | None, finished_at: datetime | None) -> datetime | None:
    """When a finished workflow is deleted (ttlSecondsAfterFinished); None: never."""
    if ttl_seconds is None or finished_at is None:
        return None
    return finished_at + timedelta(seconds=ttl_seconds)
