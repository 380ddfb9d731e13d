"""What an action tells its loop to do next."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Next(enum.Enum):
    PROCEED = "proceed"
    """Run again at once: there is more work."""
    IDLE = "idle"
    """Wait until a notifier fires: no work until something happens."""
    SLEEP = "sleep"
    """Wait a fixed time, then run again: self-scheduled work."""


@dataclass(frozen=True, slots=True)
class Directive:
    next: Next
    seconds: float = 0.0

    @classmethod
    def proceed(cls) -> Directive:
        return cls(Next.PROCEED)

    @classmethod
    def idle(cls) -> Directive:
        return cls(Next.IDLE)

    @classmethod
    def sleep(cls, seconds: float) -> Directive:
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time: {seconds}")
        return cls(Next.SLEEP, float(seconds))
