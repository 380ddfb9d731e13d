"""Backfills: every slot of a range run again, oldest first, under the job's locks.  Pure.

A backfill is asked for with the `treadle.dev/backfill` annotation (what `kubectl treadle sync
backfill` writes): `{"from": ..., "to": ..., "parallel": N, "rerun": false}`, or `cancel`.
Its progress lives in `status.backfill`, so an operator that restarts goes on where it was:
`next` is the next slot to start, and its runs under way are in `activeRuns`.

- Slots are the schedule's fire times at or after `from` and before `to`, at most
  `SLOT_LIMIT` of them; `from` may not be in the future.
- A slot that already succeeded (`succeededSlots`) is skipped unless `rerun`.
- At most `parallel` runs at once; they share one lock holder, so they run beside each other
  and keep every other run of the pipeline out.  A backfill's outcomes are its own: they do
  not count toward the job's Degraded, nor move its schedule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from treadle.api.syncjobs import ActiveRun, Backfill, SyncJobSpec, SyncJobStatus
from treadle.core import slots, slotsets, syncs, timestamps

SLOT_LIMIT = 10_000
"""Slots one backfill may hold: a year of hourly runs."""
PARALLEL_LIMIT = 20
CANCEL = "cancel"
SKIP_LIMIT = 1000
"""Already-succeeded slots stepped over in one look (the rest at the next, at once)."""


@dataclass(frozen=True)
class Request:
    start: datetime
    end: datetime
    parallel: int = 1
    rerun: bool = False


def parse_request(text: str, *, now: datetime) -> Request | str:
    """The annotation's request, or why it cannot be run (`cancel` is read by the caller)."""
    try:
        given = json.loads(text)
    except (ValueError, RecursionError):  # an annotation nested 100,000 deep, too
        return f"not JSON: {text[:80]!r}"
    if not isinstance(given, Mapping):
        return "not a JSON object"
    try:
        start = timestamps.parse(str(given["from"]))
        end = timestamps.parse(str(given["to"]))
    except (KeyError, ValueError) as error:
        return f"from and to must be RFC 3339 times ({error})"
    parallel, rerun = given.get("parallel", 1), given.get("rerun", False)
    if not isinstance(parallel, int) or not 1 <= parallel <= PARALLEL_LIMIT:
        return f"parallel must be a whole number from 1 to {PARALLEL_LIMIT}"
    if not isinstance(rerun, bool):
        return "rerun must be true or false"
    if end <= start:
        return "to must be after from"
    if start > now:
        return f"from ({timestamps.text(start)}) is in the future"
    return Request(start, end, parallel, rerun)


def slots_in(schedule: slots.Schedule, start: datetime, end: datetime) -> list[datetime] | str:
    """The fire times at or after `start`, before `end`: at most SLOT_LIMIT, else why not."""
    found: list[datetime] = []
    moment = schedule.last_at_or_before(start)
    moment = start if moment == start else schedule.next_after(start)
    while moment < end:
        found.append(moment)
        if len(found) > SLOT_LIMIT:
            return f"the range holds more than {SLOT_LIMIT} slots: split it"
        moment = schedule.next_after(moment)
    if not found:
        return "the range holds no slot of the schedule"
    return found


def begin(
    spec: SyncJobSpec, status: SyncJobStatus, request: Request, *, now: datetime
) -> SyncJobStatus | str:
    """The status with a new backfill of `request`, or why it cannot begin."""
    current = status.backfill
    if current is not None and current.phase == "Running":
        return f"backfill {current.id} ({current.range}) is still running"
    found = slots_in(syncs.schedule_of(spec), request.start, request.end)
    if isinstance(found, str):
        return found
    backfill = Backfill(
        id=(current.id if current is not None else 0) + 1,
        range=f"{timestamps.text(request.start)}/{timestamps.text(request.end)}",
        slots=len(found),
        parallel=request.parallel,
        rerun=request.rerun,
        next=timestamps.text(found[0]),
        phase="Running",
        start_time=timestamps.text(now),
        message=f"{len(found)} slots to run",
    )
    return status.model_copy(update={"backfill": backfill})


def cancel(status: SyncJobStatus, *, now: datetime) -> SyncJobStatus | None:
    """The status with the running backfill cancelled (runs under way finish); None when none
    runs."""
    if status.backfill is None or status.backfill.phase != "Running":
        return None
    cancelled = status.backfill.model_copy(
        update={
            "phase": "Cancelled",
            "next": None,
            "completion_time": timestamps.text(now),
            "message": "cancelled: runs under way finish, no other starts",
        }
    )
    return status.model_copy(update={"backfill": cancelled})


def running(status: SyncJobStatus) -> Backfill | None:
    """The backfill under way, if one is."""
    return status.backfill if status.backfill and status.backfill.phase == "Running" else None


def waiting(status: SyncJobStatus, message: str) -> SyncJobStatus:
    """The backfill waits for its locks: its message says for which, and until when."""
    if status.backfill is None:
        return status
    told = status.backfill.model_copy(update={"message": message})
    return status.model_copy(update={"backfill": told})


def runs_under_way(status: SyncJobStatus) -> list[ActiveRun]:
    return [r for r in syncs.active_runs(status) if r.backfill]


@dataclass(frozen=True)
class Step:
    status: SyncJobStatus
    """The status after stepping over succeeded slots (and completing, when all are done)."""
    due: list[slots.Slot]
    """Slots to start now, oldest first (each starts once the one before it did)."""


def _end(backfill: Backfill) -> datetime:
    return timestamps.parse(backfill.range.split("/")[1])


def step(spec: SyncJobSpec, status: SyncJobStatus, *, now: datetime) -> Step:
    """What the running backfill does now."""
    backfill = running(status)
    if backfill is None:
        return Step(status, [])
    schedule = syncs.schedule_of(spec)
    end = _end(backfill)
    cursor = timestamps.parse_optional(backfill.next)
    room = backfill.parallel - len(runs_under_way(status))
    due: list[slots.Slot] = []
    skipped = 0
    while cursor is not None and len(due) < room and skipped < SKIP_LIMIT:
        if not backfill.rerun and slotsets.contains(status.succeeded_slots, cursor):
            if due:
                break  # the cursor moves past it once the slots before it started
            skipped += 1
            after = schedule.next_after(cursor)
            cursor = after if after < end else None
            backfill = backfill.model_copy(
                update={
                    "skipped": backfill.skipped + 1,
                    "next": timestamps.text(cursor) if cursor else None,
                }
            )
            continue
        due.append(slots.Slot(cursor, schedule.next_after(cursor)))
        after = schedule.next_after(cursor)
        cursor = after if after < end else None
    if backfill.next is None and not runs_under_way(status):
        backfill = backfill.model_copy(
            update={
                "phase": "Complete",
                "completion_time": timestamps.text(now),
                "message": summary(backfill),
            }
        )
    elif skipped:
        backfill = backfill.model_copy(update={"message": summary(backfill)})
    return Step(status.model_copy(update={"backfill": backfill}), due)


def started(
    spec: SyncJobSpec,
    status: SyncJobStatus,
    slot: slots.Slot,
    *,
    now: datetime,
    run: str,
    kind: Literal["Pod", "Workflow"],
    holder: str,
) -> SyncJobStatus:
    """The backfill's run of `slot` exists: it is under way, and the cursor is past it."""
    entry = ActiveRun(
        name=run,
        kind=kind,
        slot=timestamps.text(slot.start),
        holder=holder,
        started=timestamps.text(now),
        backfill=True,
    )
    runs = [*(r for r in syncs.active_runs(status) if r.name != run), entry]
    changed: dict[str, object] = {"active_runs": runs}
    if status.backfill is not None:
        after = syncs.schedule_of(spec).next_after(slot.start)
        moved = status.backfill.model_copy(
            update={"next": timestamps.text(after) if after < _end(status.backfill) else None}
        )
        changed["backfill"] = moved.model_copy(update={"message": summary(moved)})
    return status.model_copy(update=changed)


def kept_from(spec: SyncJobSpec, status: SyncJobStatus) -> int:
    """The oldest backfill whose runs are kept (`spec.backfillHistoryLimit` of the latest)."""
    latest = status.backfill.id if status.backfill is not None else 0
    return latest - spec.backfill_history_limit + 1


WAITING = "waiting"
"""How the message of a backfill that waits for its locks begins."""


def summary(backfill: Mapping[str, object] | Backfill) -> str:
    """`done+failed+skipped/slots slots: ...`, of the model or of its JSON (the plugin reads
    status as JSON)."""
    if isinstance(backfill, Backfill):
        backfill = backfill.model_dump(mode="json")
    done, failed, skipped = (_count(backfill.get(k)) for k in ("done", "failed", "skipped"))
    return (
        f"{done + failed + skipped}/{backfill.get('slots')} slots: {done} succeeded, "
        f"{failed} failed, {skipped} skipped (had succeeded)"
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) else 0
