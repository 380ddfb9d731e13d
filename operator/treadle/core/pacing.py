"""When the workflow driver writes a workflow's status, looks at its pods, and advances it
again: the driver's timing decisions, pure, so they are tested with plain asserts."""

from __future__ import annotations

from datetime import datetime, timedelta

WRITE_INTERVAL = timedelta(seconds=1)
"""A workflow's status is written at most this often (and at once when it finishes)."""
POD_CHECK_INTERVAL = timedelta(seconds=30)
"""How often a running workflow's worker pods (and its pool's Redis user) are looked at."""
MAX_WRITE_INTERVAL = timedelta(seconds=10)
WRITES_PER_SECOND = 100
"""The driver's budget of progress writes (those of unfinished workflows): with more than
this many workflows running, each one's progress is written less often than once a second,
so a burst of small workflows is not held back by writes of their progress."""


def write_interval(running: int) -> timedelta:
    """How often a running workflow's progress is written while `running` workflows run:
    WRITE_INTERVAL, stretched to keep all of them within WRITES_PER_SECOND, at most
    MAX_WRITE_INTERVAL.  A workflow's end is always written at once."""
    stretched = timedelta(seconds=running / WRITES_PER_SECOND)
    return min(max(WRITE_INTERVAL, stretched), MAX_WRITE_INTERVAL)


def write_now(
    *,
    finished: bool,
    retry_asked: bool,
    written_at: datetime | None,
    now: datetime,
    interval: timedelta = WRITE_INTERVAL,
) -> bool:
    """Whether this advance writes status: at once when the workflow ends, a manual retry was
    asked (its annotation goes only after the write) or nothing was written yet; else at most
    once an `interval` (write_interval), never once per task."""
    return finished or retry_asked or written_at is None or now - written_at >= interval


def pods_due(checked_at: datetime | None, now: datetime) -> bool:
    return checked_at is None or now - checked_at >= POD_CHECK_INTERVAL


def next_advance(
    *,
    now: datetime,
    wake_at: datetime | None,
    wants_outputs: bool,
    unwritten_since: datetime | None,
    interval: timedelta = WRITE_INTERVAL,
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
        moments.append(unwritten_since + interval)
    return min(moments)


def ttl_due(ttl_seconds: int | None, finished_at: datetime | None) -> datetime | None:
    """When a finished workflow is deleted (ttlSecondsAfterFinished); None: never."""
    if ttl_seconds is None or finished_at is None:
        return None
    return finished_at + timedelta(seconds=ttl_seconds)
