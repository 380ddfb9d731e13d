"""Exponential backoff with jitter: the one formula for task retries and loop errors."""

from __future__ import annotations

import random


def delay_seconds(
    attempt: int,
    *,
    initial_seconds: float,
    factor: float,
    max_seconds: float,
    jitter: float,
    rng: random.Random,
) -> float:
    """The wait after the n-th failure in a row (n ≥ 1): min(max, initial × factor^(n−1)),
    shortened at random by up to `jitter` of itself, so the result is in [d × (1 − jitter), d]."""
    try:
        ceiling = min(max_seconds, initial_seconds * factor ** max(0, attempt - 1))
    except OverflowError:
        ceiling = max_seconds
    return float(ceiling * (1 - jitter * rng.random()))
