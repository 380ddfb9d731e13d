"""The lock gate a SyncJob run passes before it starts: the pipeline lock, then the tables.

- The pipeline lock is taken (at most one run of a pipeline at a time).
- Tables: a `ddl: true` job takes each table's lock itself (it changes their schema); any other
  job only checks that no one holds them (it writes to them, and must not while their schema
  changes).
- With `lockWaitSeconds` 0 a taken lock skips the run at once; otherwise the gate polls, less
  often the longer it waits, until the lock is free or the wait is over.  A gate that gives up
  releases what it took.

The store of locks is behind a protocol (Leases in the API server in production), and waiting
uses the injected clock and sleep, so the procedure is tested in virtual time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

PIPELINE_PREFIX = "treadle-pipeline-"
TABLE_PREFIX = "treadle-table-"
DEFAULT_POLL_SECONDS = 1.0
MAX_POLL_SECONDS = 8.0
"""A waiter looks again after 1 s, then 2, 4, 8, 8, ...: 40 jobs waiting on one lock polled
the API server 30 times a second at a steady 1 s."""


def pipeline_lock(name: str) -> str:
    return f"{PIPELINE_PREFIX}{name}"


def table_lock(name: str) -> str:
    return f"{TABLE_PREFIX}{name}"


class LockStore(Protocol):
    async def acquire(self, lock: str, holder: str) -> str | None:
        """Takes `lock` for `holder`; None when it is now held by `holder`, else who holds it."""

    async def holder(self, lock: str) -> str | None:
        """Who holds `lock` now (None: free, or its holder's lease expired)."""

    async def release(self, lock: str, holder: str) -> None:
        """Gives `lock` up if `holder` holds it."""


@dataclass(frozen=True)
class LockRequest:
    holder: str
    """Who the locks are for (the run's name)."""
    pipeline: str
    tables: tuple[str, ...] = ()
    ddl: bool = False
    wait_seconds: float = 0.0


@dataclass(frozen=True)
class GateResult:
    passed: bool
    held: tuple[str, ...] = ()
    """Locks now held for the run (pipeline first), to renew while it runs and release after."""
    reason: Literal["PipelineLocked", "TableLocked"] | None = None
    blocked_by: str | None = None
    """The lock that stopped the run."""
    holder: str | None = None
    """Who held it."""
    waited_seconds: float = 0.0


@dataclass
class Gate:
    store: LockStore
    clock: Callable[[], float] = field(default_factory=lambda: asyncio.get_running_loop().time)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    poll_seconds: float = DEFAULT_POLL_SECONDS
    on_acquired: Callable[[LockRequest, GateResult], Awaitable[None]] | None = None
    on_skip: Callable[[LockRequest, GateResult], Awaitable[None]] | None = None

    async def pass_through(self, request: LockRequest) -> GateResult:
        started = self.clock()
        deadline = started + request.wait_seconds
        held: list[str] = []
        pipeline = pipeline_lock(request.pipeline)
        blocker = await self._wait_for(
            lambda: self.store.acquire(pipeline, request.holder), deadline
        )
        if blocker is not None:
            return await self._skip(request, "PipelineLocked", pipeline, blocker, held, started)
        held.append(pipeline)
        for table in request.tables:
            lock = table_lock(table)
            blocker = await self._wait_for(self._table_attempt(lock, request), deadline)
            if blocker is not None:
                return await self._skip(request, "TableLocked", lock, blocker, held, started)
            if request.ddl:
                held.append(lock)
        result = GateResult(True, tuple(held), waited_seconds=self.clock() - started)
        if self.on_acquired is not None:
            await self.on_acquired(request, result)
        return result

    def _table_attempt(
        self, lock: str, request: LockRequest
    ) -> Callable[[], Awaitable[str | None]]:
        """A DDL job takes the table's lock; others only need no one else to hold it."""

        async def attempt() -> str | None:
            if request.ddl:
                return await self.store.acquire(lock, request.holder)
            holder = await self.store.holder(lock)
            return None if holder in (None, request.holder) else holder

        return attempt

    async def _wait_for(
        self, attempt: Callable[[], Awaitable[str | None]], deadline: float
    ) -> str | None:
        """Tries until the lock is ours (None) or the deadline passed (who holds it), waiting
        twice as long after each try, up to MAX_POLL_SECONDS."""
        interval = self.poll_seconds
        while True:
            blocker = await attempt()
            if blocker is None or self.clock() >= deadline:
                return blocker
            await self.sleep(min(interval, deadline - self.clock()))
            interval = min(interval * 2, max(self.poll_seconds, MAX_POLL_SECONDS))

    async def _skip(
        self,
        request: LockRequest,
        reason: Literal["PipelineLocked", "TableLocked"],
        lock: str,
        blocker: str,
        held: list[str],
        started: float,
    ) -> GateResult:
        for taken in reversed(held):
            await self.store.release(taken, request.holder)
        result = GateResult(
            False,
            reason=reason,
            blocked_by=lock,
            holder=blocker,
            waited_seconds=self.clock() - started,
        )
        if self.on_skip is not None:
            await self.on_skip(request, result)
        return result
