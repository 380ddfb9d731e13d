"""Bulkheads: a concurrency limit shared by several loops, and backoff after errors.

The backoff grows by `factor` with each consecutive error (initial, initial×m, initial×m², …,
capped at `max_seconds`), is shortened by up to `jitter` of itself at random so that loops that
failed together do not retry together, and resets after a success.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from treadle.core import backoff


@dataclass(frozen=True)
class Backoff:
    initial_seconds: float = 1.0
    max_seconds: float = 60.0
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.initial_seconds < 0 or self.max_seconds < self.initial_seconds:
            raise ValueError("backoff needs 0 <= initial_seconds <= max_seconds")
        if self.factor < 1:
            raise ValueError("backoff factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be between 0 and 1")

    def delay(self, consecutive_errors: int, rng: random.Random) -> float:
        """The wait after the n-th error in a row (n ≥ 1), in [d × (1 − jitter), d]."""
        return backoff.delay_seconds(
            consecutive_errors,
            initial_seconds=self.initial_seconds,
            factor=self.factor,
            max_seconds=self.max_seconds,
            jitter=self.jitter,
            rng=rng,
        )


@dataclass
class Bulkhead:
    """One loop's bulkhead: its (possibly shared) semaphore and its own error streak."""

    backoff: Backoff = field(default_factory=Backoff)
    semaphore: asyncio.Semaphore | None = None
    """None: unlimited; a semaphore given to several loops limits them together."""
    rng: random.Random = field(default_factory=random.Random)
    consecutive_errors: int = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.semaphore is None:
            yield
            return
        async with self.semaphore:
            yield

    def failed(self) -> float:
        """Records an error; returns how long to back off."""
        self.consecutive_errors += 1
        return self.backoff.delay(self.consecutive_errors, self.rng)

    def succeeded(self) -> None:
        self.consecutive_errors = 0
