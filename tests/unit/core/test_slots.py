"""Cron slots: the slot a moment is in, intervals of irregular schedules, time zones and DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from treadle.core.slots import Schedule, ScheduleError, skipped_retry_seconds


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_the_slot_is_the_latest_fire_time_at_or_before_now() -> None:
    every_two = Schedule("*/2 * * * *")
    slot = every_two.slot_at(utc(2025, 10, 15, 10, 1, 59))
    assert slot is not None
    assert (slot.start, slot.end) == (utc(2025, 10, 15, 10, 0), utc(2025, 10, 15, 10, 2))
    on_time = every_two.slot_at(utc(2025, 10, 15, 10, 2))
    assert on_time is not None
    assert on_time.start == utc(2025, 10, 15, 10, 2)


def test_an_irregular_schedule_has_the_interval_of_the_slot_it_is_in() -> None:
    twice = Schedule("0 9,17 * * *")
    morning = twice.slot_at(utc(2025, 1, 1, 10))
    evening = twice.slot_at(utc(2025, 1, 1, 20))
    assert morning is not None
    assert evening is not None
    assert (morning.interval_seconds, evening.interval_seconds) == (8 * 3600, 16 * 3600)


def test_a_six_field_schedule_has_seconds_first() -> None:
    slot = Schedule("*/10 * * * * *").slot_at(utc(2025, 1, 1, 0, 0, 25))
    assert slot is not None
    assert (slot.start.second, slot.interval_seconds) == (20, 10)


def test_a_local_time_that_does_not_exist_fires_at_the_first_minute_after_it() -> None:
    berlin = Schedule("30 2 * * *", "Europe/Berlin")  # 2026-03-29: 02:00 jumps to 03:00
    slot = berlin.slot_at(utc(2026, 3, 29, 12))
    assert slot is not None
    assert slot.start == utc(2026, 3, 29, 1, 0)  # 03:00 CEST
    assert slot.end == utc(2026, 3, 30, 0, 30)  # 02:30 CEST the next day


def test_a_local_time_that_happens_twice_fires_once() -> None:
    berlin = Schedule("30 2 * * *", "Europe/Berlin")  # 2026-10-25: 03:00 falls back to 02:00
    slot = berlin.slot_at(utc(2026, 10, 25, 12))
    assert slot is not None
    assert slot.start == utc(2026, 10, 25, 0, 30)  # the first 02:30 (CEST)
    assert slot.end == utc(2026, 10, 26, 1, 30)  # 02:30 CET the next day: a 25-hour slot
    assert berlin.slot_at(utc(2026, 10, 25, 1, 45)) == slot  # the second 02:30 is not a slot


def test_bad_schedules_and_time_zones_are_refused() -> None:
    with pytest.raises(ScheduleError, match="in '61 \\* \\* \\* \\*'"):
        Schedule("61 * * * *")
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Base'"):
        Schedule("0 * * * *", "Mars/Base")


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    st.sampled_from(["*/7 * * * *", "0 */5 * * *", "15 3 * * 1-5", "0 0 1 * *"]),
    st.sampled_from([None, "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
)
def test_every_moment_is_inside_its_slot(
    moment: datetime, expression: str, zone: str | None
) -> None:
    now = moment.replace(tzinfo=UTC)
    slot = Schedule(expression, zone).slot_at(now)
    assert slot is not None
    assert slot.start <= now < slot.end
    assert slot.end - slot.start >= timedelta(minutes=1)


@given(st.floats(min_value=1, max_value=10**7), st.floats(min_value=0.01, max_value=1))
def test_the_skipped_retry_wait_stays_within_its_bounds(interval: float, ratio: float) -> None:
    wait = skipped_retry_seconds(interval, ratio=ratio, min_seconds=30, max_seconds=300)
    assert 30 <= wait <= 300
