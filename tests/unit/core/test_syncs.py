"""The SyncJob decision on fixed datetimes: every scenario of the slot-aware retry seed, by name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from treadle.api.syncjobs import ManualRun, SyncJobSpec, SyncJobStatus
from treadle.core import slots, syncs

CREATED = datetime(2025, 1, 1, tzinfo=UTC)


def job(schedule: str = "0 * * * *", **extra: Any) -> SyncJobSpec:
    template = {"spec": {"containers": [{"name": "sync", "image": "x"}]}}
    return SyncJobSpec.model_validate({"schedule": schedule, "template": template, **extra})


def at(hour: int, minute: int = 0, second: int = 0, day: int = 15) -> datetime:
    return datetime(2025, 10, day, hour, minute, second, tzinfo=UTC)


def skipped_at(spec: SyncJobSpec, moment: datetime) -> dict[str, Any]:
    slot = syncs.schedule_of(spec).slot_at(moment)
    assert slot is not None
    return syncs.skipped(
        spec, SyncJobStatus(), slot, now=moment, reason="PipelineLocked", holder="other"
    )


def status_of(wire: dict[str, Any]) -> SyncJobStatus:
    return SyncJobStatus.model_validate(wire)


def decide(
    spec: SyncJobSpec, status: SyncJobStatus | dict[str, Any], now: datetime
) -> syncs.Decision:
    typed = status if isinstance(status, SyncJobStatus) else status_of(status)
    return syncs.decide(spec, typed, now=now, created=CREATED)


# The seed's slot-aware retry tests ------------------------------------------------------------


def test_skipped_job_retry_within_slot() -> None:
    spec = job("0 10 * * *")  # daily at 10:00: 5 min between retries
    status = skipped_at(spec, at(10, 0))
    decision = decide(spec, status, at(10, 5))
    assert (decision.run, decision.retry, decision.reason) == (True, True, syncs.RETRYING_MESSAGE)
    assert decision.slot is not None
    assert decision.slot.start == at(10, 0)


def test_skipped_job_too_soon_to_retry() -> None:
    spec = job("0 10 * * *")
    status = skipped_at(spec, at(10, 0))
    decision = decide(spec, status, at(10, 3))
    assert (decision.run, decision.reason, decision.wake_at) == (
        False,
        "too soon to retry",
        at(10, 5),
    )


def test_skipped_job_new_slot_abandons_retry() -> None:
    spec = job("*/2 * * * *")
    status = skipped_at(spec, at(10, 0))
    decision = decide(spec, status, at(10, 2))
    assert (decision.run, decision.retry, decision.reason) == (True, False, "new slot")
    assert decision.abandoned_slot == at(10, 0)
    assert decision.slot is not None
    assert decision.slot.start == at(10, 2)


def test_failed_job_no_automatic_retry() -> None:
    spec = job("0 * * * *")
    slot = syncs.schedule_of(spec).slot_at(at(10, 0))
    assert slot is not None
    running = syncs.started(SyncJobStatus(), slot, now=at(10, 0), run="orders-202510151000")
    failed = syncs.finished(spec, running, now=at(10, 1), succeeded=False)
    assert failed.last_outcome == "Failed"
    later = decide(spec, failed, at(10, 5))
    assert (later.run, later.reason, later.wake_at) == (
        False,
        "failed in this slot: waits for the next slot",
        at(11, 0),
    )
    assert decide(spec, failed, at(11, 0)).run


def test_retry_count_below_max_failed_status() -> None:
    spec = job("0 * * * *", maxConsecutiveFailures=3)
    failed = {
        "currentSlot": "2025-10-15T10:00:00Z",
        "lastOutcome": "Failed",
        "consecutiveFailures": 2,
    }
    assert not decide(spec, failed, at(10, 30)).run  # below the max: still no retry in the slot
    assert decide(spec, failed, at(11, 0)).run  # the next slot runs


def test_failed_job_max_retry_exceeded() -> None:
    spec = job("0 * * * *", maxConsecutiveFailures=3)
    failed = status_of(
        {"currentSlot": "2025-10-15T10:00:00Z", "lastOutcome": "Failed", "consecutiveFailures": 3}
    )
    decision = decide(spec, failed, at(11, 0))
    assert (decision.run, decision.reason) == (False, "degraded after 3 failed runs in a row")
    assert decide(spec, syncs.reset_failures(failed), at(11, 0)).run
    degraded = syncs.with_conditions(spec, failed, now=at(11), generation=1, message="")
    kinds = {c.type: c.status for c in degraded.conditions}
    assert (kinds["Degraded"], kinds["Ready"]) == ("True", "False")


def test_daily_job_skipped_retries_all_day() -> None:
    spec = job("0 2 * * *")
    status = skipped_at(spec, at(2, 0))
    attempts = []
    now = at(2, 0)
    while now < at(2, 0, day=16):
        decision = decide(spec, status, now)
        if decision.run:
            attempts.append(now)
            slot = decision.slot
            assert slot is not None
            status = syncs.skipped(
                spec, status, slot, now=now, reason="PipelineLocked", holder="other"
            )
        now += timedelta(minutes=1)
    assert attempts[:3] == [at(2, 5), at(2, 10), at(2, 15)]
    assert len(attempts) == 24 * 12 - 1  # every 5 min until the next day's slot
    assert status.attempts_in_slot == 24 * 12


def test_frequent_job_adaptive_backoff() -> None:
    spec = job("*/2 * * * *")
    status = skipped_at(spec, at(10, 0))
    assert status.next_retry_time == "2025-10-15T10:01:00Z"  # 50% of 2 min
    assert decide(spec, status, at(10, 1)).run
    retried = syncs.skipped(
        spec, status, syncs.schedule_of(spec).slot_at(at(10, 1)), now=at(10, 1),  # type: ignore[arg-type]
        reason="PipelineLocked", holder="other",
    )  # fmt: skip
    assert retried.next_retry_time is None  # 10:02 opens the next slot
    assert decide(spec, retried, at(10, 1, 59)).reason == "no retry fits before the next slot"


@pytest.mark.parametrize(
    ("schedule", "interval_seconds", "wait_seconds"),
    [
        ("*/2 * * * *", 120, 60),  # every 2 minutes
        ("*/15 * * * *", 900, 300),  # every 15 minutes: 450 s clamped to 5 min
        ("0 * * * *", 3600, 300),  # hourly
        ("0 2 * * *", 86400, 300),  # daily
        ("0 2 * * 1", 7 * 86400, 300),  # weekly
    ],
)
def test_different_cron_frequencies(
    schedule: str, interval_seconds: int, wait_seconds: int
) -> None:
    spec = job(schedule)
    slot = syncs.schedule_of(spec).slot_at(at(12, 0, day=22))
    assert slot is not None
    assert slot.interval_seconds == interval_seconds
    assert syncs.retry_wait_seconds(spec, slot) == wait_seconds


def test_no_last_attempted_at() -> None:
    spec = job("0 * * * *")
    status = {"currentSlot": "2025-10-15T10:00:00Z", "lastOutcome": "Skipped"}
    decision = decide(spec, status, at(10, 0, 10))
    assert (decision.run, decision.retry) == (True, True)


def test_minimum_backoff() -> None:
    spec = job("* * * * *")  # every minute: 50% is 30 s, the minimum
    slot = syncs.schedule_of(spec).slot_at(at(10, 0))
    assert slot is not None
    assert syncs.retry_wait_seconds(spec, slot) == 30
    fast = job("*/10 * * * * *", skippedRetry={"minSeconds": 2, "maxSeconds": 60, "ratio": 0.1})
    tiny = syncs.schedule_of(fast).slot_at(at(10, 0))
    assert tiny is not None
    assert syncs.retry_wait_seconds(fast, tiny) == 2  # 1 s is below the minimum


# Around the slot ----------------------------------------------------------------------------


def test_a_slot_before_the_job_existed_never_runs() -> None:
    spec = job("0 * * * *")
    decision = syncs.decide(spec, SyncJobStatus(), now=at(10, 30), created=at(10, 1))
    assert (decision.run, decision.wake_at) == (False, at(11, 0))


def test_missed_slots_run_once_within_the_starting_deadline() -> None:
    spec = job("*/5 * * * *", startingDeadlineSeconds=120)
    done = {"currentSlot": "2025-10-15T10:00:00Z", "lastOutcome": "Succeeded"}
    # The operator was down from 10:01 to 10:21: only the latest slot (10:20) is considered.
    back = decide(spec, done, at(10, 21))
    assert back.run
    assert back.slot is not None
    assert back.slot.start == at(10, 20)
    too_late = decide(spec, done, at(10, 23))
    assert not too_late.run
    assert "more than startingDeadlineSeconds (120)" in too_late.reason
    assert too_late.wake_at == at(10, 25)


def test_a_running_suspended_or_degraded_job_starts_nothing() -> None:
    spec = job("0 * * * *")
    assert decide(spec, {"activeRun": "r"}, at(11)).reason == "a run is in progress"
    assert decide(job(suspend=True), {}, at(11)).reason == "suspended"


def test_a_skipped_attempt_records_reason_holder_and_count() -> None:
    spec = job("0 * * * *")
    status = skipped_at(spec, at(10, 0))
    assert status == status_of(
        {
            "currentSlot": "2025-10-15T10:00:00Z",
            "lastAttemptTime": "2025-10-15T10:00:00Z",
            "attemptsInSlot": 1,
            "lastOutcome": "Skipped",
            "lastSkipReason": "PipelineLocked",
            "lastSkipHolder": "other",
            "nextRetryTime": "2025-10-15T10:05:00Z",
            "nextScheduleTime": "2025-10-15T11:00:00Z",
        }
    )


def test_a_success_resets_the_failure_count() -> None:
    spec = job("0 * * * *")
    slot = slots.Slot(at(10), at(11))
    running = syncs.started(SyncJobStatus(), slot, now=at(10), run="r")
    failed = syncs.finished(spec, running, now=at(10, 1), succeeded=False)
    assert failed.consecutive_failures == 1
    ok = syncs.finished(spec, failed, now=at(11, 1), succeeded=True)
    assert (ok.consecutive_failures, ok.last_successful_time, ok.active_run) == (
        0,
        "2025-10-15T11:01:00Z",
        None,
    )


def test_a_run_now_value_too_long_for_status_is_recorded_cut_not_refused_for_ever() -> None:
    """A 100 KiB `treadle.dev/run-now` value would make every status write fail the schema
    (maxLength 1024) and the request never be answered."""
    told = syncs.manual_run(
        SyncJobStatus(), requested="x" * 100_000, outcome="Started", message="run r"
    )
    assert told.manual_run is not None
    assert len(told.manual_run.requested) == syncs.MANUAL_REQUEST_CHARS == 1024
    ManualRun.model_validate(told.manual_run.model_dump())  # fits the status schema
    field = ManualRun.model_fields["requested"]
    assert [m.max_length for m in field.metadata if hasattr(m, "max_length")] == [1024]
