"""Circuit breaker and token bucket: the state machines, as pure functions of state and time.

The queue service runs the same machines inside Redis (Lua) so that all workers share one
breaker and one bucket per target; these functions are their specification, and a test drives
both with the same sequences.

Circuit breaker, per target (HTTP: scheme://host:port; other actions: the task name):

    closed --(failure_threshold consecutive failures)--> open
    open --(open_seconds passed; the next call is the trial)--> half-open
    half-open --(trial succeeds)--> closed      half-open --(trial fails)--> open (timer anew)

While open, and while a trial is in flight, calls fail fast without touching the target.  A
trial whose result never comes back (its worker died) is given up after `open_seconds`, and
another trial is let through.

Token bucket, per target: `burst` tokens, refilled at `per_second`; a call takes one token or
is told how long to wait for it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

BreakerPhase = Literal["closed", "open", "half-open"]


@dataclass(frozen=True)
class Breaker:
    failures: int = 0
    """Consecutive failures while closed."""
    opened_at: float | None = None
    """When the breaker last opened; None while closed."""
    trial_started_at: float | None = None
    """When the half-open trial call was let through; None when no trial is in flight."""

    def phase(self, now: float, open_seconds: float) -> BreakerPhase:
        if self.opened_at is None:
            return "closed"
        if self.trial_started_at is not None and now - self.trial_started_at < open_seconds:
            return "half-open"
        return "half-open" if now - self.opened_at >= open_seconds else "open"


def admit(state: Breaker, now: float, open_seconds: float) -> tuple[bool, Breaker]:
    """May a call go to the target now?  Letting the half-open trial through is recorded."""
    if state.opened_at is None:
        return True, state
    if now - state.opened_at < open_seconds:
        return False, state
    trial_running = (
        state.trial_started_at is not None and now - state.trial_started_at < open_seconds
    )
    if trial_running:
        return False, state
    return True, replace(state, trial_started_at=now)


def record(state: Breaker, succeeded: bool, now: float, failure_threshold: int) -> Breaker:
    """The breaker after a call's outcome."""
    if succeeded:
        return Breaker()
    if state.opened_at is not None:
        # A failed trial (or a straggler from before opening) opens the breaker anew.
        return Breaker(failures=state.failures + 1, opened_at=now)
    failures = state.failures + 1
    if failures >= failure_threshold:
        return Breaker(failures=failures, opened_at=now)
    return Breaker(failures=failures)


@dataclass(frozen=True)
class Bucket:
    tokens: float
    updated_at: float


def take(bucket: Bucket | None, now: float, per_second: float, burst: int) -> tuple[float, Bucket]:
    """Takes a token: (0, new bucket) when one was there, else (seconds to wait, bucket)."""
    if bucket is None:
        bucket = Bucket(tokens=float(burst), updated_at=now)
    elapsed = max(0.0, now - bucket.updated_at)
    tokens = min(float(burst), bucket.tokens + elapsed * per_second)
    if tokens >= 1:
        return 0.0, Bucket(tokens - 1, now)
    return (1 - tokens) / per_second, Bucket(tokens, now)
