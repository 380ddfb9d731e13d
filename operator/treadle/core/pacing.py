"""When the workflow driver writes a workflow's status, looks at its pods, and advances it
again: the driver's timing decisions, pure, so they are tested with plain asserts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from treadle.api.workflows import WorkflowStatus

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


TERMINATE_HOLD = timedelta(seconds=3)
"""How long a terminated workflow on pods of its own keeps its pods and Redis user after its
workers were told: they check every second, and cancel what they hold once they see it."""

Pods = Literal["remove", "ensure", "leave"]


@dataclass(frozen=True)
class Aftermath:
    """What the driver does after an engine step, besides enqueueing what it asked for."""

    write: bool
    """Status is written now (and the results it records acknowledged)."""
    pods: Pods
    """The workflow's worker pods: removed (it ended), ensured (their check is due), or left."""
    release: bool
    """Once the write is done: its Redis keys and pool user go (it ended)."""
    keep_outputs: bool
    """Its stored outputs stay when it goes (a Failed run keeps them for a manual retry)."""
    due: datetime | None
    """When it is advanced again without news (None: never)."""
    delete: bool = False
    """Its ttlSecondsAfterFinished passed: the Workflow is deleted and forgotten."""
    forget: bool = False
    """It ended and nothing more is due: forgotten."""


def after_step(
    *,
    finished: bool,
    succeeded: bool,
    wake_at: datetime | None,
    wants_outputs: bool,
    own_pods: bool,
    cancel_sent: datetime | None,
    checked_at: datetime | None,
    written_at: datetime | None,
    retry_asked: bool,
    retry_pending: bool,
    ttl_seconds: int | None,
    finished_at: datetime | None,
    now: datetime,
    interval: timedelta = WRITE_INTERVAL,
) -> Aftermath:
    """The driver's decisions after a step: the status write (write_now), the pods (a
    terminated workflow's own pods are held TERMINATE_HOLD for its workers to see the cancel),
    letting go of what a finished workflow used, and when to look again (its retry or deadline,
    a pod check, a write waiting for its interval, its TTL)."""
    held = finished and own_pods and cancel_sent is not None and now < cancel_sent + TERMINATE_HOLD
    write = write_now(
        finished=finished,
        retry_asked=retry_asked,
        written_at=written_at,
        now=now,
        interval=interval,
    )
    pods: Pods = (
        "remove" if finished and not held else "ensure" if pods_due(checked_at, now) else "leave"
    )
    release = write and finished and not held
    if held:
        assert cancel_sent is not None
        return Aftermath(write, pods, release, not succeeded, cancel_sent + TERMINATE_HOLD)
    if finished:
        due = ttl_due(ttl_seconds, finished_at)
        delete = due is not None and due <= now
        forget = due is None and not retry_pending
        return Aftermath(write, pods, release, not succeeded, due, delete=delete, forget=forget)
    due = next_advance(
        now=now,
        wake_at=wake_at,
        wants_outputs=wants_outputs,
        unwritten_since=None if write else written_at,
        interval=interval,
    )
    return Aftermath(write, pods, release, not succeeded, due)


def cut_short(tasks: Iterable[str], status: WorkflowStatus) -> list[str]:
    """Which of `tasks` were skipped after they started (the workflow's deadline passed, or it
    was terminated): an ended workflow stops what still runs for them."""
    return sorted(
        name
        for name in tasks
        if (entry := status.tasks.get(name)) is not None
        and entry.phase == "Skipped"
        and (entry.attempts or entry.items)
    )
