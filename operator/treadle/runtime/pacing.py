"""Pacing: how fast a loop that keeps finding work may go.

- `min_interval_seconds`: the least time between the starts of two executions, whatever woke
  the loop (a notify storm cannot turn it into a hot loop).  Default 0: no floor.
- `active_interval_seconds`: the longest pause after a `proceed`.  Default 0: a busy loop runs
  back to back.
- `ramp_step_seconds`: the pause after consecutive `proceed`s starts at 0 and grows by this step
  up to `active_interval_seconds`, so a short burst runs at full speed and sustained load yields
  to the rest of the process.  Any other directive resets the ramp.  Default 0: with an active
  interval set, the pause is the full interval from the first `proceed`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pacing:
    active_interval_seconds: float = 0.0
    min_interval_seconds: float = 0.0
    ramp_step_seconds: float = 0.0

    def __post_init__(self) -> None:
        if min(self.active_interval_seconds, self.min_interval_seconds, self.ramp_step_seconds) < 0:
            raise ValueError("pacing intervals cannot be negative")

    def pause_after_proceed(self, consecutive_proceeds: int) -> float:
        """The pause before the next execution after the n-th `proceed` in a row (n ≥ 1)."""
        if self.ramp_step_seconds <= 0:
            return self.active_interval_seconds
        ramped = self.ramp_step_seconds * (consecutive_proceeds - 1)
        return min(self.active_interval_seconds, ramped)

    def floor_wait(self, last_start: float | None, now: float) -> float:
        """How long to wait so that executions start at least `min_interval_seconds` apart."""
        if last_start is None or self.min_interval_seconds <= 0:
            return 0.0
        return max(0.0, last_start + self.min_interval_seconds - now)
