"""The SyncJob decision: from spec, status and now, whether to run, and the status transitions
of an attempt (skipped, started, finished).  Pure: no clock, no API.

Slot-aware retry:
- a run that could not get its locks is Skipped and tried again inside the same slot once
  clamp(ratio × interval, minSeconds, maxSeconds) passed since the last attempt;
- when the next slot begins, a retry still pending in the old slot is abandoned and the new
  slot starts fresh;
- a run that Failed is not retried inside its slot: it waits for the next one;
- after maxConsecutiveFailures failures in a row the job is Degraded and stops scheduling until
  its spec changes or the failures are reset;
- a slot whose fire time is more than startingDeadlineSeconds ago is missed, not run.

Runs under way (`activeRuns`) and a new slot, by `concurrencyPolicy`: Forbid waits for them,
Allow starts the new slot's run beside them, Replace terminates them first.

Missed slots (the operator was away, or a run outlasted its slot), by `catchUp.policy`: Latest
runs only the latest slot; All runs each missed slot, oldest first, one at a time, at most
`maxRuns` (the latest), each within startingDeadlineSeconds of when catching up began
(`catchUpSince`).  A skipped catch-up run is retried after the usual wait (its slot is over, so
no next slot abandons it); a failed one makes way for the next missed slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from treadle.api.syncjobs import ActiveRun, ManualRun, ManualRunOutcome, SyncJobSpec, SyncJobStatus
from treadle.core import conditions, slots, slotsets, timestamps

SUCCEEDED, FAILED, SKIPPED = "Succeeded", "Failed", "Skipped"

MAX_ALLOWED_RUNS = 50
"""Runs of a job under way at once with concurrencyPolicy Allow: a new slot beyond that waits
(status, which lists them, stays small)."""

RETRYING_MESSAGE = "Retrying skipped run within current slot"
ABANDONING_MESSAGE = "Abandoning retry: new slot"


@dataclass(frozen=True)
class Decision:
    run: bool
    """True: attempt a run now (take the locks, then start the run's pod)."""
    reason: str
    """What was decided, in a user's words."""
    slot: slots.Slot | None = None
    """The slot the attempt belongs to."""
    retry: bool = False
    """The attempt retries a skipped run inside its slot."""
    wake_at: datetime | None = None
    """When to decide again without news (None: only when something changes)."""
    abandoned_slot: datetime | None = None
    """A slot whose pending retry this decision abandons (a new slot began)."""
    replace: tuple[str, ...] = ()
    """Runs to terminate before the attempt (concurrencyPolicy Replace)."""
    catch_up_since: datetime | None = None
    """The attempt catches up on a missed slot: since when the job has been catching up."""


def schedule_of(spec: SyncJobSpec) -> slots.Schedule:
    return slots.Schedule(spec.schedule, spec.time_zone)


def retry_wait_seconds(spec: SyncJobSpec, slot: slots.Slot) -> float:
    policy = spec.skipped_retry
    return slots.skipped_retry_seconds(
        slot.interval_seconds,
        ratio=policy.ratio,
        min_seconds=policy.min_seconds,
        max_seconds=policy.max_seconds,
    )


def is_degraded(spec: SyncJobSpec, status: SyncJobStatus) -> bool:
    return failures(status) >= spec.max_consecutive_failures


def failures(status: SyncJobStatus) -> int:
    return status.consecutive_failures or 0


def active_runs(status: SyncJobStatus) -> list[ActiveRun]:
    """The runs under way (a status written before `activeRuns` existed has `activeRun` only;
    since, `activeRun` is always one of `activeRuns`)."""
    if status.active_runs or not status.active_run:
        return list(status.active_runs)
    run = status.active_run
    return [ActiveRun(name=run, slot=status.current_slot or "", holder=run)]


def scheduled_runs(status: SyncJobStatus) -> list[ActiveRun]:
    """The runs under way that the schedule started (not a backfill's)."""
    return [run for run in active_runs(status) if not run.backfill]


def catch_up_slots(
    schedule: slots.Schedule, after: datetime, through: datetime, limit: int
) -> list[datetime]:
    """The latest `limit` fire times after `after` up to `through` (a fire time), oldest
    first: at most `limit` steps back, whatever the gap."""
    found: list[datetime] = []
    moment: datetime | None = through
    while moment is not None and moment > after and len(found) < limit:
        found.append(moment)
        moment = schedule.last_at_or_before(moment - timedelta(seconds=1))
    return found[::-1]


def decide(
    spec: SyncJobSpec,
    status: SyncJobStatus,
    *,
    now: datetime,
    created: datetime,
    lock_released: bool = False,
) -> Decision:
    """What to do now.  `created` is the job's creation time: a slot before it never runs.
    `lock_released`: a lock of the job was given back since it last looked, so a run skipped
    on it is retried at once rather than at its retry time."""
    schedule = schedule_of(spec)
    upcoming = schedule.next_after(now)
    running = scheduled_runs(status)
    if running and spec.concurrency_policy == "Forbid":
        return Decision(False, "a run is in progress")
    if len(running) >= MAX_ALLOWED_RUNS:
        return Decision(False, f"{len(running)} runs are in progress, the most Allow keeps")
    if is_degraded(spec, status):
        return Decision(False, f"degraded after {failures(status)} failed runs in a row")
    if spec.suspend:
        return Decision(False, "suspended")
    slot = schedule.slot_at(now)
    if slot is None or slot.start < created.replace(microsecond=0):
        return Decision(False, "waiting for the first slot", wake_at=upcoming)
    current = timestamps.parse_optional(status.current_slot)
    since = timestamps.parse_optional(status.catch_up_since)
    if spec.catch_up.policy == "All" and current is not None and current < slot.start:
        caught = _catching_up(
            spec, status, schedule, slot, current, since, now, created, lock_released
        )
        if caught is not None:
            return caught
    if running and current == slot.start:
        return Decision(False, "a run of this slot is in progress", slot=slot)
    if current != slot.start:
        abandoned = current if status.last_outcome == SKIPPED and current else None
        deadline = spec.starting_deadline_seconds
        late = (now - max(slot.start, since or slot.start)).total_seconds()
        if deadline is not None and late > deadline:
            return Decision(
                False,
                f"missed the slot of {timestamps.text(slot.start)}: {late:.0f} s late, more than "
                f"startingDeadlineSeconds ({deadline})",
                slot=slot,
                wake_at=upcoming,
                abandoned_slot=abandoned,
            )
        replace = tuple(r.name for r in running) if spec.concurrency_policy == "Replace" else ()
        return Decision(True, "new slot", slot=slot, abandoned_slot=abandoned, replace=replace)
    return _in_slot(spec, status, slot, now, upcoming, lock_released)


def _in_slot(
    spec: SyncJobSpec,
    status: SyncJobStatus,
    slot: slots.Slot,
    now: datetime,
    wake: datetime,
    lock_released: bool = False,
) -> Decision:
    """The slot was attempted already: what its last outcome leaves to do."""
    outcome = status.last_outcome
    if outcome == SUCCEEDED:
        return Decision(False, "succeeded in this slot", slot=slot, wake_at=wake)
    if outcome == FAILED:
        return Decision(
            False, "failed in this slot: waits for the next slot", slot=slot, wake_at=wake
        )
    if outcome != SKIPPED:
        return Decision(True, "no attempt recorded in this slot", slot=slot)
    last = timestamps.parse_optional(status.last_attempt_time)
    if last is None:
        return Decision(True, RETRYING_MESSAGE, slot=slot, retry=True)
    if lock_released and slot.end > now:
        return Decision(True, f"{RETRYING_MESSAGE} (the lock was released)", slot=slot, retry=True)
    due = last + timedelta(seconds=retry_wait_seconds(spec, slot))
    if due >= slot.end and slot.end > now:
        return Decision(False, "no retry fits before the next slot", slot=slot, wake_at=wake)
    if now >= due:
        return Decision(True, RETRYING_MESSAGE, slot=slot, retry=True)
    return Decision(False, "too soon to retry", slot=slot, wake_at=due)


def _catching_up(
    spec: SyncJobSpec,
    status: SyncJobStatus,
    schedule: slots.Schedule,
    latest: slots.Slot,
    current: datetime,
    since: datetime | None,
    now: datetime,
    created: datetime,
    lock_released: bool = False,
) -> Decision | None:
    """catchUp All with slots missed after `current`: the next one to run (or to retry), or
    None when there is none before the latest slot (or the catch-up's time ran out)."""
    began = since or now
    deadline = spec.starting_deadline_seconds
    if deadline is not None and (now - began).total_seconds() > deadline:
        return None  # the rest of the missed slots are given up: the latest slot runs
    if since is not None and status.last_outcome == SKIPPED:
        slot = slots.Slot(current, schedule.next_after(current))
        decision = _in_slot(spec, status, slot, now, latest.end, lock_released)
        return Decision(
            decision.run,
            f"catching up: {decision.reason}",
            slot=slot,
            retry=decision.retry,
            wake_at=decision.wake_at,
            catch_up_since=began,
        )
    missed = [
        moment
        for moment in catch_up_slots(schedule, current, latest.start, spec.catch_up.max_runs)
        if moment >= created.replace(microsecond=0)
    ]
    if not missed or missed[0] == latest.start:
        return None
    if scheduled_runs(status):
        return Decision(False, "catching up: a run is in progress", catch_up_since=began)
    slot = slots.Slot(missed[0], schedule.next_after(missed[0]))
    return Decision(
        True,
        f"catching up on the slot of {timestamps.text(slot.start)} ({len(missed) - 1} more to go)",
        slot=slot,
        catch_up_since=began,
    )


# status transitions ----------------------------------------------------------------------


def _attempted(status: SyncJobStatus, slot: slots.Slot, now: datetime) -> dict[str, object]:
    """The fields every attempt of `slot` changes."""
    same = status.current_slot == timestamps.text(slot.start)
    return {
        "current_slot": timestamps.text(slot.start),
        "last_attempt_time": timestamps.text(now),
        "attempts_in_slot": ((status.attempts_in_slot or 0) if same else 0) + 1,
    }


def skipped(
    spec: SyncJobSpec,
    status: SyncJobStatus,
    slot: slots.Slot,
    *,
    now: datetime,
    reason: Literal["PipelineLocked", "TableLocked"],
    holder: str | None,
    catch_up_since: datetime | None = None,
) -> SyncJobStatus:
    """The attempt could not get its locks: Skipped, with the next retry inside the slot (a
    catch-up slot, whose end has passed, is retried after the same wait all the same)."""
    due = now + timedelta(seconds=retry_wait_seconds(spec, slot))
    changed = {
        **_attempted(status, slot, now),
        "last_outcome": SKIPPED,
        "last_skip_reason": reason,
        "last_skip_holder": holder,
        "next_retry_time": timestamps.text(due) if due < slot.end or catch_up_since else None,
        "next_schedule_time": timestamps.text(slot.end),
    }
    if catch_up_since is not None:
        changed["catch_up_since"] = timestamps.text(catch_up_since)
    return status.model_copy(update=changed)


def started(
    status: SyncJobStatus,
    slot: slots.Slot,
    *,
    now: datetime,
    run: str,
    kind: Literal["Pod", "Workflow"] = "Pod",
    holder: str | None = None,
    catch_up_since: datetime | None = None,
) -> SyncJobStatus:
    """The locks are held and the run (its pod or Workflow) exists."""
    entry = ActiveRun(
        name=run,
        kind=kind,
        slot=timestamps.text(slot.start),
        holder=holder or run,
        started=timestamps.text(now),
    )
    return status.model_copy(
        update={
            **_attempted(status, slot, now),
            "active_run": run,
            "active_runs": [*(r for r in active_runs(status) if r.name != run), entry],
            "catch_up_since": timestamps.text(catch_up_since) if catch_up_since else None,
            "next_retry_time": None,
            "last_skip_reason": None,
            "last_skip_holder": None,
            "next_schedule_time": timestamps.text(slot.end),
        }
    )


MANUAL_REQUEST_CHARS = 1024
"""The most of a run-now annotation's value status records (its schema's maxLength)."""


def manual_run(
    status: SyncJobStatus,
    *,
    requested: str,
    outcome: ManualRunOutcome,
    message: str,
    run: str | None = None,
) -> SyncJobStatus:
    """What came of the run asked for by hand (`treadle.dev/run-now: <requested>`): Waiting,
    Started, Skipped or Failed; whoever asked reads it once the annotation is gone."""
    # The annotation's value is anyone's (up to 256 KiB): status keeps what fits its schema,
    # which the plugin's own values (a time) always do.
    told = ManualRun(
        requested=requested[:MANUAL_REQUEST_CHARS], outcome=outcome, run=run, message=message
    )
    return status.model_copy(update={"manual_run": told})


def without_run(status: SyncJobStatus, run: str) -> SyncJobStatus:
    """The status with `run` no longer under way; `activeRun` names the newest scheduled run
    still under way."""
    left = [r for r in active_runs(status) if r.name != run]
    scheduled = [r for r in left if not r.backfill]
    newest = scheduled[-1].name if scheduled else None
    return status.model_copy(update={"active_runs": left, "active_run": newest})


def run_of(status: SyncJobStatus, run: str) -> ActiveRun | None:
    return next((r for r in active_runs(status) if r.name == run), None)


def finished(
    spec: SyncJobSpec,
    status: SyncJobStatus,
    *,
    now: datetime,
    succeeded: bool,
    run: str | None = None,
) -> SyncJobStatus:
    """The run (default: the active one) ended or was stopped: its outcome, the failure count,
    and its slot among the succeeded ones.  A backfill's run counts in the backfill only."""
    name = run or status.active_run or ""
    entry = run_of(status, name)
    updated = without_run(status, name)
    slot = timestamps.parse_optional(entry.slot if entry is not None else None)
    changed: dict[str, object] = {}
    if succeeded and slot is not None:
        changed["succeeded_slots"] = slotsets.add(updated.succeeded_slots, slot, schedule_of(spec))
    if entry is not None and entry.backfill:
        if updated.backfill is not None:
            counted = "done" if succeeded else "failed"
            total = getattr(updated.backfill, counted) + 1
            changed["backfill"] = updated.backfill.model_copy(update={counted: total})
        return updated.model_copy(update=changed)
    if slot is None or updated.current_slot == timestamps.text(slot):
        changed["last_outcome"] = SUCCEEDED if succeeded else FAILED
    if succeeded:
        changed.update(consecutive_failures=0, last_successful_time=timestamps.text(now))
    else:
        changed["consecutive_failures"] = failures(updated) + 1
    return updated.model_copy(update=changed)


def reset_failures(status: SyncJobStatus) -> SyncJobStatus:
    """`treadle.dev/reset-failures` or a spec change: a Degraded job schedules again."""
    return status.model_copy(update={"consecutive_failures": 0})


def degraded_message(spec: SyncJobSpec, status: SyncJobStatus) -> str:
    return (
        f"{failures(status)} failed runs in a row (maxConsecutiveFailures "
        f"{spec.max_consecutive_failures}); annotate treadle.dev/reset-failures or change the "
        "spec to schedule again"
    )


def with_conditions(
    spec: SyncJobSpec,
    status: SyncJobStatus,
    *,
    now: datetime,
    generation: int | None,
    message: str,
) -> SyncJobStatus:
    """Ready (scheduling normally) and Degraded (too many failures in a row), kstatus-style."""
    degraded = is_degraded(spec, status)
    why = degraded_message(spec, status)
    reason = "Degraded" if degraded else "Suspended" if spec.suspend else "Scheduling"
    found = conditions.kstatus(
        status.conditions,
        ready=not degraded,
        reconciling=False,
        stalled=degraded,
        reason=reason,
        message=why if degraded else message,
        generation=generation,
        now=now,
    )
    found = conditions.set_condition(
        found,
        type="Degraded",
        status="True" if degraded else "False",
        reason="TooManyFailures" if degraded else "Healthy",
        message=why if degraded else f"{failures(status)} failed runs in a row",
        generation=generation,
        now=now,
    )
    return status.model_copy(update={"conditions": found, "observed_generation": generation})


def read_status(raw: Mapping[str, Any] | None) -> SyncJobStatus:
    """A SyncJob's status as the API server holds it, typed; a field that does not parse (written
    by another version, or by hand) is left out rather than the whole status refused."""
    given = dict(raw or {})
    for _ in range(len(given) + 1):
        try:
            return SyncJobStatus.model_validate(given)
        except ValidationError as error:
            bad = {str(e["loc"][0]) for e in error.errors() if e["loc"]}
            if not bad & given.keys():
                break
            given = {k: v for k, v in given.items() if k not in bad}
    return SyncJobStatus()


def wire(status: SyncJobStatus) -> dict[str, Any]:
    """The status as the API server keeps it (camelCase JSON, no nulls)."""
    return status.model_dump(mode="json", exclude_none=True)
