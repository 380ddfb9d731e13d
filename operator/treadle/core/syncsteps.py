"""What each moment of a SyncJob's life changes: its status, and the effects that go with it
(Events that tell it, metrics that count it, the runs it prunes).  Pure: the scheduler gathers
what happened (a slot came, a lock was or was not taken, a run started or ended, a request
arrived), asks here, and hands the answer, a `SyncStep`, to controllers/syncapply.py, which
writes the status and carries the effects out in order.

The messages users read in Events, `kubectl describe` and `kubectl treadle sync status` are all
made here, beside the decisions they report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from treadle.api.syncjobs import ActiveRun, ManualRunOutcome, SyncJobSpec, SyncJobStatus
from treadle.core import backfills, runbodies, slots, syncs, timestamps
from treadle.core.runbodies import RunKind

# Metrics an effect counts (controllers/syncapply.py maps them to Prometheus objects).
RUNS, RUNS_STARTED, SKIPS, ABANDONED_RETRIES = "runs", "started", "skips", "abandoned"
LOCK_WAIT, SCHEDULE_DELAY = "lock_wait", "schedule_delay"


@dataclass(frozen=True)
class Tell:
    """An Event on the job."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Count:
    """A metric counts `value` (a counter's increment, a histogram's observation)."""

    metric: str
    value: float = 1.0
    label: str | None = None


@dataclass(frozen=True)
class Prune:
    """Finished runs of `kind` beyond the job's history limits go (a backfill's from the
    oldest kept one on are kept)."""

    kind: RunKind
    keep_backfills_from: int


Effect = Tell | Count | Prune


@dataclass(frozen=True)
class SyncStep:
    status: SyncJobStatus | None = None
    """The status to write (None: it stays as it is)."""
    message: str = ""
    """What the write says (the Ready condition's message)."""
    effects: tuple[Effect, ...] = ()
    """Carried out in order, after the write."""


@dataclass(frozen=True)
class Attempt:
    """An attempt the decision asked for: the slot it is for; manual: run by hand (requested:
    the request's annotation value); backfill: the backfill it belongs to (0: none);
    catch_up_since: it catches up on a missed slot."""

    slot: slots.Slot
    manual: bool = False
    backfill: int = 0
    catch_up_since: datetime | None = None
    requested: str | None = None


@dataclass(frozen=True)
class Plan:
    """What the schedule asks for now."""

    step: SyncStep
    attempt: Attempt | None = None
    """The attempt to make (its locks, then its run)."""
    replace: tuple[str, ...] = ()
    """Runs to stop first (concurrencyPolicy Replace); the attempt comes once they ended."""
    slot: slots.Slot | None = None
    """The slot whose run replaces them."""
    wake_at: datetime | None = None


def plan(
    spec: SyncJobSpec, status: SyncJobStatus, *, now: datetime, created: datetime, released: bool
) -> Plan:
    """The schedule's decision (`syncs.decide`) and what it tells."""
    decision = syncs.decide(spec, status, now=now, created=created, lock_released=released)
    told: list[Effect] = []
    if decision.abandoned_slot is not None:
        abandoned = timestamps.text(decision.abandoned_slot)
        told += [
            Tell("Normal", "AbandonedRetry", f"{syncs.ABANDONING_MESSAGE} ({abandoned})"),
            Count(ABANDONED_RETRIES),
        ]
    if decision.run and decision.slot is not None:
        if decision.replace:
            replace = decision.replace
            return Plan(SyncStep(effects=tuple(told)), replace=replace, slot=decision.slot)
        if decision.retry:
            attempt = (status.attempts_in_slot or 0) + 1
            told.append(
                Tell("Normal", "RetryingSkipped", f"{syncs.RETRYING_MESSAGE} (attempt {attempt})")
            )
        if decision.catch_up_since is not None:
            told.append(Tell("Normal", "CatchingUp", decision.reason))
        wanted = Attempt(decision.slot, catch_up_since=decision.catch_up_since)
        return Plan(SyncStep(effects=tuple(told)), attempt=wanted)
    running = syncs.scheduled_runs(status)
    waiting = None
    if not running:
        upcoming = timestamps.text(syncs.schedule_of(spec).next_after(now))
        waiting = status.model_copy(update={"next_schedule_time": upcoming})
        if decision.abandoned_slot is not None:
            waiting = waiting.model_copy(update={"next_retry_time": None})
    wake = decision.wake_at
    if wake is None and running and spec.concurrency_policy != "Forbid":
        wake = syncs.schedule_of(spec).next_after(now)
    return Plan(SyncStep(waiting, decision.reason, tuple(told)), wake_at=wake)


def replacing(slot: slots.Slot, run: str) -> tuple[str, Tell]:
    """Why a run under way stops for a new slot's (concurrencyPolicy Replace), and the Event."""
    why = f"replaced by the run of the slot of {timestamps.text(slot.start)}"
    return why, Tell("Normal", "Replacing", f"run {run} is being {why}")


def run_by_hand(spec: SyncJobSpec, now: datetime, requested: str) -> tuple[Attempt, Tell]:
    """A run asked for by hand: an attempt in the slot of now (or from now to the next)."""
    schedule = syncs.schedule_of(spec)
    slot = schedule.slot_at(now) or slots.Slot(now, schedule.next_after(now))
    return Attempt(slot, manual=True, requested=requested), Tell(
        "Normal", "RunRequested", "run requested by hand"
    )


def run_by_hand_waits(
    spec: SyncJobSpec, status: SyncJobStatus, requested: str, running: list[ActiveRun]
) -> SyncStep:
    """A run by hand waits for the run under way (concurrencyPolicy Forbid or Replace): status
    says so, and the request stays set until it starts."""
    message = (
        f"waits for run {', '.join(r.name for r in running)} to end "
        f"(concurrencyPolicy {spec.concurrency_policy})"
    )
    told = syncs.manual_run(status, requested=requested, outcome="Waiting", message=message)
    return SyncStep(told if told != status else None, f"run by hand {message}")


def _told_by_hand(
    attempt: Attempt,
    status: SyncJobStatus,
    outcome: ManualRunOutcome,
    message: str,
    run: str | None = None,
) -> SyncJobStatus:
    """The status, telling whoever asked for this attempt by hand what came of it."""
    if attempt.requested is None:
        return status
    return syncs.manual_run(
        status, requested=attempt.requested, outcome=outcome, message=message, run=run
    )


# an attempt's outcomes ------------------------------------------------------------------------


def started(
    spec: SyncJobSpec,
    status: SyncJobStatus,
    attempt: Attempt,
    *,
    run: str,
    kind: RunKind,
    holder: str,
    locks: tuple[str, ...],
    adopted: bool,
    waited_seconds: float,
    now: datetime,
) -> SyncStep:
    """The locks are held and the run exists (made now, or `adopted`: made before a crash)."""
    slot = attempt.slot
    first = status.current_slot != timestamps.text(slot.start)
    if attempt.backfill:
        updated = backfills.started(spec, status, slot, now=now, run=run, kind=kind, holder=holder)
    else:
        updated = syncs.started(
            status, slot, now=now, run=run, kind=kind, holder=holder,
            catch_up_since=attempt.catch_up_since,
        )  # fmt: skip
    updated = _told_by_hand(attempt, updated, "Started", f"run {run} started", run=run)
    what = "adopted (it existed already)" if adopted else "started"
    effects: list[Effect] = [
        Count(LOCK_WAIT, waited_seconds),
        Tell("Normal", "Started", f"run {run} {what}; holding {', '.join(locks)}"),
        Count(RUNS_STARTED),
    ]
    on_time = not attempt.manual and not attempt.backfill and attempt.catch_up_since is None
    if first and on_time:
        effects.append(Count(SCHEDULE_DELAY, (now - slot.start).total_seconds()))
    return SyncStep(updated, f"run {run} in progress", tuple(effects))


def skipped(
    spec: SyncJobSpec,
    status: SyncJobStatus,
    attempt: Attempt,
    *,
    reason: Literal["PipelineLocked", "TableLocked"],
    lock: str,
    holder: str | None,
    waited_seconds: float,
    now: datetime,
) -> tuple[SyncStep, datetime]:
    """The attempt could not get its locks: the skip (a backfill waits instead), and when to
    try again."""
    held = f"{lock} is held by {holder}"
    waited = Count(LOCK_WAIT, waited_seconds)
    if attempt.backfill:
        retry = now + timedelta(seconds=syncs.retry_wait_seconds(spec, attempt.slot))
        message = (
            f"{backfills.WAITING}: {held}; trying again at {timestamps.text(retry)} or once it "
            "is released"
        )
        told = Tell("Normal", "BackfillWaiting", message)
        return SyncStep(
            backfills.waiting(status, message), "backfill waiting", (waited, told)
        ), retry
    updated = syncs.skipped(
        spec, status, attempt.slot, now=now, reason=reason, holder=holder,
        catch_up_since=attempt.catch_up_since,
    )  # fmt: skip
    then = updated.next_retry_time
    message = f"skipped: {held}; " + (
        f"retrying within the slot at {then}" if then else "waiting for the next slot"
    )
    updated = _told_by_hand(attempt, updated, "Skipped", message)
    effects = (waited, Tell("Normal", "Skipped", message), Count(SKIPS, label=reason))
    return SyncStep(updated, message, effects), timestamps.parse_optional(then) or attempt.slot.end


def unrunnable(
    spec: SyncJobSpec, status: SyncJobStatus, attempt: Attempt, *, run: str, why: str, now: datetime
) -> SyncStep:
    """A run that cannot be made (a param that does not render for this slot, a refused
    body): it fails, as a run that failed at once would."""
    message = f"run {run} could not be made: {why}"
    if attempt.backfill:
        updated = backfills.started(
            spec, status, attempt.slot, now=now, run=run, kind=runbodies.WORKFLOW, holder=run
        )
    else:
        updated = syncs.started(status, attempt.slot, now=now, run=run)
    updated = syncs.finished(spec, updated, now=now, succeeded=False, run=run)
    updated = _told_by_hand(attempt, updated, "Failed", message, run=run)
    return SyncStep(updated, message, (Tell("Warning", "Failed", message),))


# runs ending ----------------------------------------------------------------------------------


def finished(
    spec: SyncJobSpec,
    status: SyncJobStatus,
    run: ActiveRun,
    *,
    succeeded: bool,
    why: str,
    replaced: bool,
    now: datetime,
) -> SyncStep:
    """The run ended, was stopped, or is gone (`replaced`: stopped for a newer slot's run)."""
    if replaced:
        updated = syncs.without_run(status, run.name)
    else:
        updated = syncs.finished(spec, status, now=now, succeeded=succeeded, run=run.name)
    outcome = "Replaced" if replaced else "Succeeded" if succeeded else "Failed"
    message = f"run {run.name} succeeded" if succeeded else f"run {run.name} {why}"
    effects: list[Effect] = [
        Tell("Normal" if succeeded or replaced else "Warning", outcome, message),
        Count(RUNS, label=outcome),
    ]
    if not run.backfill and syncs.is_degraded(spec, updated):
        effects.append(Tell("Warning", "Degraded", syncs.degraded_message(spec, updated)))
    effects.append(Prune(run.kind, backfills.kept_from(spec, updated)))
    return SyncStep(updated, message, tuple(effects))


def holder_done(status: SyncJobStatus, holder: str) -> bool:
    """No run holding its locks for `holder` is under way any more: they are given back."""
    return not any(r.holder == holder for r in syncs.active_runs(status))


def reset(status: SyncJobStatus, why: str) -> SyncStep:
    """A new spec, or the reset annotation: a Degraded job schedules again."""
    if not syncs.failures(status):
        return SyncStep()
    return SyncStep(
        syncs.reset_failures(status),
        "failures reset",
        (Tell("Normal", "FailuresReset", f"consecutive failures reset ({why})"),),
    )


# backfills ------------------------------------------------------------------------------------


def backfill_requested(
    spec: SyncJobSpec, status: SyncJobStatus, value: str, *, now: datetime
) -> SyncStep:
    """A backfill asked for (or `cancel`): what came of it is in status, or an Event says why
    not."""
    if value.strip() == backfills.CANCEL:
        cancelled = backfills.cancel(status, now=now)
        if cancelled is None:
            return _refused("no backfill is running")
        told = Tell("Normal", "BackfillCancelled", "backfill cancelled")
        return SyncStep(cancelled, "backfill cancelled", (told,))
    request = backfills.parse_request(value, now=now)
    if isinstance(request, str):
        return _refused(request)
    begun = backfills.begin(spec, status, request, now=now)
    if isinstance(begun, str):
        return _refused(begun)
    assert begun.backfill is not None
    b = begun.backfill
    message = f"backfill {b.id} of {b.range}: {b.slots} slots, {b.parallel} at a time"
    return SyncStep(begun, "backfill begun", (Tell("Normal", "BackfillStarted", message),))


def _refused(why: str) -> SyncStep:
    return SyncStep(effects=(Tell("Warning", "BackfillRefused", f"backfill refused: {why}"),))


def backfill_progress(
    spec: SyncJobSpec, status: SyncJobStatus, *, now: datetime
) -> tuple[SyncStep, list[Attempt]]:
    """The running backfill steps over slots that had succeeded, completes when all are done,
    and asks for the slots to start now, oldest first."""
    stepped = backfills.step(spec, status, now=now)
    backfill = stepped.status.backfill
    if backfill is None:
        return SyncStep(), []
    attempts = [Attempt(slot, backfill=backfill.id) for slot in stepped.due]
    if stepped.status == status:
        return SyncStep(), attempts
    told = f"backfill {backfill.id} {backfill.phase.lower()}: {backfill.message}"
    effects: tuple[Effect, ...] = ()
    if backfill.phase == "Complete":
        message = f"backfill {backfill.id}: {backfill.message}"
        effects = (Tell("Normal", "BackfillComplete", message),)
    return SyncStep(stepped.status, told, effects), attempts
