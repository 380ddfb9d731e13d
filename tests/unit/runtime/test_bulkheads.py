"""Backoff grows, caps, jitters within bounds and resets after a success."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from treadle.runtime import Backoff, Bulkhead


def test_backoff_doubles_from_initial_and_caps_at_max() -> None:
    backoff = Backoff(initial_seconds=1, max_seconds=10, factor=2, jitter=0)
    rng = random.Random(1)
    assert [backoff.delay(n, rng) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_a_success_resets_the_error_streak() -> None:
    bulkhead = Bulkhead(Backoff(initial_seconds=1, max_seconds=60, jitter=0))
    assert [bulkhead.failed() for _ in range(3)] == [1, 2, 4]
    bulkhead.succeeded()
    assert bulkhead.failed() == 1


@given(
    errors=st.integers(min_value=1, max_value=10_000),
    jitter=st.floats(min_value=0, max_value=1),
    seed=st.integers(),
)
def test_jittered_delay_stays_within_its_bounds(errors: int, jitter: float, seed: int) -> None:
    backoff = Backoff(initial_seconds=0.5, max_seconds=30, factor=3, jitter=jitter)
    ceiling = min(30.0, 0.5 * 3.0 ** min(errors - 1, 50))
    delay = backoff.delay(errors, random.Random(seed))
    assert ceiling * (1 - jitter) - 1e-9 <= delay <= ceiling + 1e-9


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"initial_seconds": -1}, "initial_seconds"),
        ({"initial_seconds": 5, "max_seconds": 1}, "max_seconds"),
        ({"factor": 0.5}, "factor"),
        ({"jitter": 1.5}, "jitter"),
    ],
)
def test_nonsense_backoff_settings_are_refused(bad: dict[str, float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Backoff(**bad)
