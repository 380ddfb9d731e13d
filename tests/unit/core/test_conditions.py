from datetime import UTC, datetime, timedelta

import pytest

from treadle.core import conditions, timestamps

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def test_a_new_condition_transitions_now() -> None:
    [ready] = conditions.set_condition(
        [], type="Ready", status="False", reason="Pending", message="m", generation=1, now=T0
    )
    assert conditions.wire([ready]) == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Pending",
            "message": "m",
            "lastTransitionTime": "2026-11-22T08:00:00Z",
            "observedGeneration": 1,
        }
    ]


def test_same_status_keeps_the_transition_time_but_updates_the_rest() -> None:
    first = conditions.set_condition(
        [], type="Ready", status="False", reason="A", message="", generation=1, now=T0
    )
    [again] = conditions.set_condition(
        first,
        type="Ready",
        status="False",
        reason="B",
        message="x",
        generation=2,
        now=T0 + timedelta(hours=1),
    )
    assert (again.last_transition_time, again.reason, again.observed_generation) == (
        "2026-11-22T08:00:00Z",
        "B",
        2,
    )


def test_a_status_change_moves_the_transition_time() -> None:
    first = conditions.set_condition(
        [], type="Ready", status="False", reason="A", message="", generation=1, now=T0
    )
    [changed] = conditions.set_condition(
        first,
        type="Ready",
        status="True",
        reason="Done",
        message="",
        generation=1,
        now=T0 + timedelta(minutes=5),
    )
    assert changed.last_transition_time == "2026-11-22T08:05:00Z"


def test_other_conditions_are_kept_and_sorted_by_type() -> None:
    current = conditions.set_condition(
        [], type="Stalled", status="False", reason="A", message="", generation=1, now=T0
    )
    current = conditions.set_condition(
        current, type="Ready", status="False", reason="A", message="", generation=1, now=T0
    )
    assert [c.type for c in current] == ["Ready", "Stalled"]


def test_conditions_read_from_status_round_trip() -> None:
    raw = [
        {"type": "Ready", "status": "True", "reason": "Succeeded", "message": "",
         "lastTransitionTime": "2026-11-22T08:00:00Z"},
    ]  # fmt: skip
    assert conditions.wire(conditions.parse(raw)) == raw


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        timestamps.text(datetime(2026, 1, 1))
