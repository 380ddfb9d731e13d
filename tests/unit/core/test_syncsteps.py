"""A SyncJob's moments as the core decides them: the status each one leaves, and the Events,
counts and prunings that go with it, in order (#33: these were 17 Event and 10 status-write
sites of the scheduler, tested only end to end)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from treadle.api.syncjobs import ActiveRun, SyncJobSpec, SyncJobStatus
from treadle.core import backfills, slots, syncs, syncsteps
from treadle.core.syncsteps import Attempt, Count, Prune, SyncStep, Tell

CREATED = datetime(2025, 1, 1, tzinfo=UTC)
TEMPLATE = {"spec": {"containers": [{"name": "c", "image": "x"}]}}


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 10, 15, hour, minute, tzinfo=UTC)


def spec(**given: Any) -> SyncJobSpec:
    return SyncJobSpec.model_validate({"schedule": "0 * * * *", "template": TEMPLATE, **given})


def told(step: SyncStep) -> list[tuple[str, str]]:
    return [(e.reason, e.message) for e in step.effects if isinstance(e, Tell)]


def counted(step: SyncStep) -> list[tuple[str, str | None]]:
    return [(e.metric, e.label) for e in step.effects if isinstance(e, Count)]


HOUR = slots.Slot(at(10), at(11))


def running(*runs: ActiveRun) -> SyncJobStatus:
    return SyncJobStatus(active_runs=list(runs), current_slot="2025-10-15T10:00:00Z")


def test_a_new_slot_asks_for_an_attempt_and_a_quiet_moment_for_the_next_fire_time() -> None:
    plan = syncsteps.plan(spec(), SyncJobStatus(), now=at(10, 1), created=CREATED, released=False)
    assert plan.attempt == Attempt(HOUR)
    assert plan.step == SyncStep()  # nothing to write before the attempt says what came of it
    done = SyncJobStatus(current_slot="2025-10-15T10:00:00Z", last_outcome="Succeeded")
    quiet = syncsteps.plan(spec(), done, now=at(10, 30), created=CREATED, released=False)
    assert quiet.attempt is None
    assert quiet.wake_at == at(11)
    assert quiet.step.status is not None
    assert quiet.step.status.next_schedule_time == "2025-10-15T11:00:00Z"
    assert quiet.step.message == "succeeded in this slot"


def test_a_retry_of_a_skipped_run_and_an_abandoned_one_are_told_and_counted() -> None:
    job = spec()
    skipped = syncs.skipped(
        job, SyncJobStatus(), HOUR, now=at(10), reason="TableLocked", holder="x"
    )
    again = syncsteps.plan(job, skipped, now=at(10, 6), created=CREATED, released=False)
    assert again.attempt is not None
    assert told(again.step) == [("RetryingSkipped", f"{syncs.RETRYING_MESSAGE} (attempt 2)")]
    later = syncsteps.plan(job, skipped, now=at(11, 0), created=CREATED, released=False)
    assert told(later.step) == [
        ("AbandonedRetry", f"{syncs.ABANDONING_MESSAGE} (2025-10-15T10:00:00Z)")
    ]
    assert counted(later.step) == [(syncsteps.ABANDONED_RETRIES, None)]


def test_replace_asks_to_stop_the_runs_under_way_for_the_new_slot_first() -> None:
    old = ActiveRun(name="r10", slot="2025-10-15T10:00:00Z", holder="r10")
    plan = syncsteps.plan(
        spec(concurrencyPolicy="Replace"), running(old), now=at(11), created=CREATED,
        released=False,
    )  # fmt: skip
    assert (plan.attempt, plan.replace) == (None, ("r10",))
    assert plan.slot == slots.Slot(at(11), at(12))
    why, tell = syncsteps.replacing(plan.slot, "r10")
    assert why.startswith("replaced")  # how the run's end is known as a replacement
    assert tell.reason == "Replacing"


def test_a_started_run_is_under_way_told_and_counted_and_its_delay_measured_once() -> None:
    step = syncsteps.started(
        spec(), SyncJobStatus(), Attempt(HOUR), run="r", kind="Pod", holder="r",
        locks=("treadle-pipeline-j",), adopted=False, waited_seconds=0.5, now=at(10, 0),
    )  # fmt: skip
    assert step.status is not None
    assert [r.name for r in step.status.active_runs] == ["r"]
    assert told(step) == [("Started", "run r started; holding treadle-pipeline-j")]
    assert counted(step) == [
        (syncsteps.LOCK_WAIT, None), (syncsteps.RUNS_STARTED, None),
        (syncsteps.SCHEDULE_DELAY, None),
    ]  # fmt: skip
    again = syncsteps.started(
        spec(), step.status, Attempt(HOUR, manual=True, requested="t1"), run="r2", kind="Pod",
        holder="r2", locks=(), adopted=True, waited_seconds=0, now=at(10, 5),
    )  # fmt: skip
    assert told(again)[0][1].startswith("run r2 adopted (it existed already)")
    assert syncsteps.SCHEDULE_DELAY not in [m for m, _ in counted(again)]
    assert again.status is not None
    assert again.status.manual_run is not None
    assert (again.status.manual_run.outcome, again.status.manual_run.run) == ("Started", "r2")


def test_a_skip_says_who_holds_the_lock_and_when_it_is_tried_again() -> None:
    step, retry = syncsteps.skipped(
        spec(), SyncJobStatus(), Attempt(HOUR, requested="t1"), reason="PipelineLocked",
        lock="treadle-pipeline-j", holder="other-1", waited_seconds=2.0, now=at(10),
    )  # fmt: skip
    assert retry == at(10, 5)
    message = "skipped: treadle-pipeline-j is held by other-1; retrying within the slot at "
    assert step.message == message + "2025-10-15T10:05:00Z"
    assert step.status is not None
    assert step.status.manual_run is not None
    assert step.status.manual_run.outcome == "Skipped"
    assert counted(step)[-1] == (syncsteps.SKIPS, "PipelineLocked")


def test_a_waiting_backfill_keeps_its_progress_and_says_what_it_waits_for() -> None:
    request = backfills.Request(at(0), at(3), parallel=1)
    begun = backfills.begin(spec(), SyncJobStatus(), request, now=at(12))
    assert isinstance(begun, SyncJobStatus)
    step, retry = syncsteps.skipped(
        spec(), begun, Attempt(slots.Slot(at(0), at(1)), backfill=1), reason="PipelineLocked",
        lock="treadle-pipeline-j", holder="j-1", waited_seconds=0, now=at(12),
    )  # fmt: skip
    assert retry == at(12) + timedelta(minutes=5)
    assert step.status is not None
    assert step.status.backfill is not None
    assert step.status.backfill.message.startswith(f"{backfills.WAITING}: treadle-pipeline-j")
    assert step.status.last_outcome is None  # a backfill's wait is not the schedule's skip
    assert told(step)[0][0] == "BackfillWaiting"


def test_a_run_that_cannot_be_made_fails_at_once() -> None:
    step = syncsteps.unrunnable(
        spec(), SyncJobStatus(), Attempt(HOUR), run="r", why="no such template", now=at(10)
    )
    assert step.status is not None
    assert (step.status.last_outcome, step.status.consecutive_failures) == ("Failed", 1)
    assert told(step) == [("Failed", "run r could not be made: no such template")]


def test_a_finished_run_counts_prunes_and_tells_degraded_once_too_many_failed() -> None:
    job = spec(maxConsecutiveFailures=1, successfulRunsHistoryLimit=2)
    run = ActiveRun(name="r", slot="2025-10-15T10:00:00Z", holder="r", kind="Workflow")
    step = syncsteps.finished(
        job, running(run), run, succeeded=False, why="failed", replaced=False, now=at(10, 5)
    )
    assert step.status is not None
    assert step.status.active_runs == []
    assert told(step) == [
        ("Failed", "run r failed"),
        ("Degraded", syncs.degraded_message(job, step.status)),
    ]
    assert step.effects[-1] == Prune("Workflow", keep_backfills_from=-1)
    assert syncsteps.holder_done(step.status, "r")
    replaced = syncsteps.finished(
        job, running(run), run, succeeded=False, why="replaced by ...", replaced=True,
        now=at(10, 5),
    )  # fmt: skip
    assert replaced.status is not None
    assert replaced.status.consecutive_failures is None  # a replaced run is no failure
    assert told(replaced) == [("Replaced", "run r replaced by ...")]


def test_backfill_requests_begin_cancel_or_are_refused_with_the_reason() -> None:
    value = '{"from": "2025-10-15T00:00:00Z", "to": "2025-10-15T03:00:00Z", "parallel": 2}'
    begun = syncsteps.backfill_requested(spec(), SyncJobStatus(), value, now=at(12))
    assert told(begun) == [
        (
            "BackfillStarted",
            "backfill 1 of 2025-10-15T00:00:00Z/2025-10-15T03:00:00Z: 3 slots, 2 at a time",
        )
    ]
    assert begun.status is not None
    again = syncsteps.backfill_requested(spec(), begun.status, value, now=at(12))
    assert again.status is None
    assert told(again)[0][0] == "BackfillRefused"
    assert "is still running" in told(again)[0][1]
    cancelled = syncsteps.backfill_requested(spec(), begun.status, " cancel ", now=at(12))
    assert told(cancelled) == [("BackfillCancelled", "backfill cancelled")]
    nothing = syncsteps.backfill_requested(spec(), SyncJobStatus(), "cancel", now=at(12))
    assert told(nothing) == [("BackfillRefused", "backfill refused: no backfill is running")]
    junk = syncsteps.backfill_requested(spec(), SyncJobStatus(), "{", now=at(12))
    assert told(junk)[0][1].startswith("backfill refused: not JSON")


def test_backfill_progress_asks_for_its_slots_and_tells_its_end() -> None:
    value = '{"from": "2025-10-15T00:00:00Z", "to": "2025-10-15T02:00:00Z", "parallel": 2}'
    begun = syncsteps.backfill_requested(spec(), SyncJobStatus(), value, now=at(12)).status
    assert begun is not None
    step, attempts = syncsteps.backfill_progress(spec(), begun, now=at(12))
    assert [a.slot.start for a in attempts] == [at(0), at(1)]
    assert {a.backfill for a in attempts} == {1}
    assert step == SyncStep()  # nothing changed until they start
    skipping = begun.model_copy(
        update={"succeeded_slots": "2025-10-15T00:00:00Z/2025-10-15T02:00:00Z"}
    )
    done, none = syncsteps.backfill_progress(spec(), skipping, now=at(12))
    assert none == []
    assert done.status is not None
    assert done.status.backfill is not None
    assert done.status.backfill.phase == "Complete"
    assert told(done) == [
        (
            "BackfillComplete",
            "backfill 1: 2/2 slots: 0 succeeded, 0 failed, 2 skipped (had succeeded)",
        )
    ]


def test_a_reset_writes_only_when_there_were_failures_and_a_waiting_run_by_hand_once() -> None:
    assert syncsteps.reset(SyncJobStatus(), "spec changed") == SyncStep()
    reset = syncsteps.reset(SyncJobStatus(consecutive_failures=3), "spec changed")
    assert reset.status is not None
    assert reset.status.consecutive_failures == 0
    assert told(reset) == [("FailuresReset", "consecutive failures reset (spec changed)")]
    run = ActiveRun(name="r", slot="x", holder="r")
    waits = syncsteps.run_by_hand_waits(spec(), running(run), "t1", [run])
    assert waits.message == "run by hand waits for run r to end (concurrencyPolicy Forbid)"
    assert waits.status is not None
    assert syncsteps.run_by_hand_waits(spec(), waits.status, "t1", [run]).status is None
    attempt, tell = syncsteps.run_by_hand(spec(), at(10, 30), "t2")
    assert (attempt.slot, attempt.manual, attempt.requested) == (HOUR, True, "t2")
    assert tell.reason == "RunRequested"
