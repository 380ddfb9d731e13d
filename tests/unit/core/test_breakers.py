"""The breaker and bucket state machines (their Redis twins are tested against these)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from treadle.core.breakers import Breaker, admit, record, take

THRESHOLD, OPEN = 5, 30.0


def fail(state: Breaker, now: float) -> Breaker:
    return record(state, False, now, THRESHOLD)


def test_the_breaker_opens_after_the_threshold_of_consecutive_failures() -> None:
    state = Breaker()
    for second in range(4):
        state = fail(state, second)
        assert admit(state, second, OPEN)[0]
    state = fail(state, 4)
    assert state.phase(4, OPEN) == "open"
    assert admit(state, 5, OPEN) == (False, state)


def test_a_success_resets_the_count() -> None:
    state = fail(fail(Breaker(), 0), 1)
    assert record(state, True, 2, THRESHOLD) == Breaker()


def test_after_open_seconds_exactly_one_trial_goes_through() -> None:
    state = Breaker(failures=5, opened_at=0)
    allowed, state = admit(state, OPEN, OPEN)
    assert allowed
    assert state.phase(OPEN, OPEN) == "half-open"
    assert admit(state, OPEN + 1, OPEN)[0] is False


def test_a_successful_trial_closes_and_a_failed_one_reopens() -> None:
    _, trial = admit(Breaker(failures=5, opened_at=0), 31, OPEN)
    assert record(trial, True, 32, THRESHOLD).phase(32, OPEN) == "closed"
    reopened = fail(trial, 32)
    assert (reopened.opened_at, admit(reopened, 33, OPEN)[0]) == (32, False)


def test_a_trial_that_never_reports_is_given_up_after_open_seconds() -> None:
    _, trial = admit(Breaker(failures=5, opened_at=0), 30, OPEN)
    assert admit(trial, 59, OPEN)[0] is False
    assert admit(trial, 60, OPEN)[0] is True


@given(st.lists(st.tuples(st.booleans(), st.floats(min_value=0, max_value=100)), max_size=60))
def test_a_closed_breaker_never_refuses_and_an_open_one_never_admits_early(
    events: list[tuple[bool, float]],
) -> None:
    state, now = Breaker(), 0.0
    for succeeded, gap in events:
        now += gap
        allowed, after = admit(state, now, OPEN)
        if state.opened_at is None:
            assert allowed
        elif now - state.opened_at < OPEN:
            assert not allowed
        state = record(after, succeeded, now, THRESHOLD) if allowed else after


def test_the_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    bucket = None
    waits = []
    for _ in range(4):
        wait, bucket = take(bucket, 0.0, per_second=2, burst=3)
        waits.append(wait)
    assert waits == [0, 0, 0, 0.5]
    assert take(bucket, 0.5, per_second=2, burst=3)[0] == 0


@given(
    st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=100),
    st.floats(min_value=0.1, max_value=50),
    st.integers(min_value=1, max_value=20),
)
def test_the_bucket_never_allows_more_than_burst_plus_rate_times_time(
    gaps: list[float], rate: float, burst: int
) -> None:
    bucket, now, allowed = None, 0.0, 0
    for gap in gaps:
        now += gap
        wait, bucket = take(bucket, now, rate, burst)
        allowed += wait == 0
    assert allowed <= burst + rate * now + 1e-6
