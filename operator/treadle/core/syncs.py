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
- a slot whose fire time is more than startingDeadlineSeconds ago is missed, not run; of the
  slots missed while the operator was down only the latest is considered (at most one run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from treadle.api.syncjobs import SyncJobSpec
from treadle.core import conditions, patches, slots, timestamps

SUCCEEDED, FAILED, SKIPPED = "Succeeded", "Failed", "Skipped"

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


def is_degraded(spec: SyncJobSpec, status: Mapping[str, Any]) -> bool:
    return int(status.get("consecutiveFailures") or 0) >= spec.max_consecutive_failures


def decide(
    spec: SyncJobSpec, status: Mapping[str, Any], *, now: datetime, created: datetime
) -> Decision:
    """What to do now.  `created` is the job's creation time: a slot before it never runs."""
    schedule = schedule_of(spec)
    upcoming = schedule.next_after(now)
    if status.get("activeRun"):
        return Decision(False, "a run is in progress")
    if is_degraded(spec, status):
        failures = status.get("consecutiveFailures")
        return Decision(False, f"degraded after {failures} failed runs in a row")
    if spec.suspend:
        return Decision(False, "suspended")
    slot = schedule.slot_at(now)
    if slot is None or slot.start < created.replace(microsecond=0):
        return Decision(False, "waiting for the first slot", wake_at=upcoming)
    current = timestamps.parse_optional(status.get("currentSlot"))
    if current != slot.start:
        abandoned = current if status.get("lastOutcome") == SKIPPED and current else None
        deadline = spec.starting_deadline_seconds
        late = (now - slot.start).total_seconds()
        if deadline is not None and late > deadline:
            return Decision(
                False,
                f"missed the slot of {timestamps.text(slot.start)}: {late:.0f} s late, more than "
                f"startingDeadlineSeconds ({deadline})",
                slot=slot,
                wake_at=upcoming,
                abandoned_slot=abandoned,
            )
        return Decision(True, "new slot", slot=slot, abandoned_slot=abandoned)
    outcome = status.get("lastOutcome")
    if outcome == SUCCEEDED:
        return Decision(False, "succeeded in this slot", slot=slot, wake_at=upcoming)
    if outcome == FAILED:
        return Decision(
            False, "failed in this slot: waits for the next slot", slot=slot, wake_at=upcoming
        )
    if outcome != SKIPPED:
        return Decision(True, "no attempt recorded in this slot", slot=slot)
    last = timestamps.parse_optional(status.get("lastAttemptTime"))
    if last is None:
        return Decision(True, RETRYING_MESSAGE, slot=slot, retry=True)
    due = last + timedelta(seconds=retry_wait_seconds(spec, slot))
    if due >= slot.end:
        return Decision(False, "no retry fits before the next slot", slot=slot, wake_at=upcoming)
    if now >= due:
        return Decision(True, RETRYING_MESSAGE, slot=slot, retry=True)
    return Decision(False, "too soon to retry", slot=slot, wake_at=due)


# status transitions ----------------------------------------------------------------------


def _attempted(status: Mapping[str, Any], slot: slots.Slot, now: datetime) -> dict[str, Any]:
    updated: dict[str, Any] = patches.copy_json(status)
    same = updated.get("currentSlot") == timestamps.text(slot.start)
    updated.update(
        currentSlot=timestamps.text(slot.start),
        lastAttemptTime=timestamps.text(now),
        attemptsInSlot=(int(updated.get("attemptsInSlot") or 0) if same else 0) + 1,
    )
    return updated


def skipped(
    spec: SyncJobSpec,
    status: Mapping[str, Any],
    slot: slots.Slot,
    *,
    now: datetime,
    reason: Literal["PipelineLocked", "TableLocked"],
    holder: str | None,
) -> dict[str, Any]:
    """The attempt could not get its locks: Skipped, with the next retry inside the slot."""
    updated = _attempted(status, slot, now)
    due = now + timedelta(seconds=retry_wait_seconds(spec, slot))
    updated.update(
        lastOutcome=SKIPPED,
        lastSkipReason=reason,
        lastSkipHolder=holder,
        nextRetryTime=timestamps.text(due) if due < slot.end else None,
        nextScheduleTime=timestamps.text(slot.end),
    )
    return updated


def started(
    status: Mapping[str, Any], slot: slots.Slot, *, now: datetime, run: str
) -> dict[str, Any]:
    """The locks are held and the run's pod exists."""
    updated = _attempted(status, slot, now)
    updated.update(
        activeRun=run,
        nextRetryTime=None,
        lastSkipReason=None,
        lastSkipHolder=None,
        nextScheduleTime=timestamps.text(slot.end),
    )
    return updated


def finished(
    spec: SyncJobSpec, status: Mapping[str, Any], *, now: datetime, succeeded: bool
) -> dict[str, Any]:
    """The run's pod ended (or was stopped): its outcome, and the failure count."""
    updated: dict[str, Any] = patches.copy_json(status)
    updated["activeRun"] = None
    if succeeded:
        updated.update(
            lastOutcome=SUCCEEDED, consecutiveFailures=0, lastSuccessfulTime=timestamps.text(now)
        )
    else:
        updated.update(
            lastOutcome=FAILED,
            consecutiveFailures=int(updated.get("consecutiveFailures") or 0) + 1,
        )
    return updated


def reset_failures(status: Mapping[str, Any]) -> dict[str, Any]:
    """`treadle.dev/reset-failures` or a spec change: a Degraded job schedules again."""
    return {**status, "consecutiveFailures": 0}


def degraded_message(spec: SyncJobSpec, status: Mapping[str, Any]) -> str:
    failures = int(status.get("consecutiveFailures") or 0)
    return (
        f"{failures} failed runs in a row (maxConsecutiveFailures {spec.max_consecutive_failures})"
        "; annotate treadle.dev/reset-failures or change the spec to schedule again"
    )


def with_conditions(
    spec: SyncJobSpec,
    status: Mapping[str, Any],
    *,
    now: datetime,
    generation: int | None,
    message: str,
) -> dict[str, Any]:
    """Ready (scheduling normally) and Degraded (too many failures in a row), kstatus-style."""
    updated = dict(status)
    degraded = is_degraded(spec, status)
    failures = int(status.get("consecutiveFailures") or 0)
    why = degraded_message(spec, status)
    reason = "Degraded" if degraded else "Suspended" if spec.suspend else "Scheduling"
    found = conditions.kstatus(
        conditions.parse(status.get("conditions")),
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
        message=why if degraded else f"{failures} failed runs in a row",
        generation=generation,
        now=now,
    )
    updated["conditions"] = conditions.wire(found)
    updated["observedGeneration"] = generation
    return updated
