"""The lock gate in virtual time, against an in-memory lock store: every lock scenario of the
slot-aware retry seed, by name."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import pytest

from treadle.core.gates import (
    MAX_POLL_SECONDS,
    Gate,
    GateResult,
    LockRequest,
    pipeline_lock,
    table_lock,
)

pytestmark = pytest.mark.looptime


@dataclass
class Locks:
    """Locks in memory; `release_at` lets a holder give a lock up after some (virtual) seconds."""

    holders: dict[str, str] = field(default_factory=dict)
    release_at: dict[str, float] = field(default_factory=dict)

    def _expire(self) -> None:
        now = asyncio.get_running_loop().time()
        for lock, moment in list(self.release_at.items()):
            if now >= moment:
                self.holders.pop(lock, None)
                del self.release_at[lock]

    async def acquire(self, lock: str, holder: str) -> str | None:
        self._expire()
        current = self.holders.setdefault(lock, holder)
        return None if current == holder else current

    async def holder(self, lock: str) -> str | None:
        self._expire()
        return self.holders.get(lock)

    async def release(self, lock: str, holder: str) -> None:
        if self.holders.get(lock) == holder:
            del self.holders[lock]


def request(**extra: object) -> LockRequest:
    return LockRequest(**{"holder": "orders-1", "pipeline": "orders", **extra})  # type: ignore[arg-type]


async def test_no_lock_manager_runs_without_locking() -> None:
    """There is always a store here; a job without tables takes only its pipeline lock."""
    result = await Gate(Locks()).pass_through(request())
    assert (result.passed, result.held) == (True, (pipeline_lock("orders"),))


async def test_pipeline_lock_acquired_successfully() -> None:
    locks = Locks()
    result = await Gate(locks).pass_through(request(tables=("warehouse.orders",)))
    assert result.passed
    assert locks.holders == {pipeline_lock("orders"): "orders-1"}


async def test_pipeline_lock_unavailable_skips_job() -> None:
    locks = Locks({pipeline_lock("orders"): "kubectl:alice"})
    result = await Gate(locks).pass_through(request())
    assert (result.passed, result.reason, result.holder) == (
        False,
        "PipelineLocked",
        "kubectl:alice",
    )


async def test_table_not_locked_proceeds() -> None:
    result = await Gate(Locks()).pass_through(request(tables=("a", "b")))
    assert (result.passed, result.held) == (True, (pipeline_lock("orders"),))


async def test_table_locked_no_wait_skips() -> None:
    locks = Locks({table_lock("b"): "migrate-7"})
    loop = asyncio.get_running_loop()
    start = loop.time()
    result = await Gate(locks).pass_through(request(tables=("a", "b")))
    assert (result.passed, result.reason, result.blocked_by, result.holder) == (
        False,
        "TableLocked",
        table_lock("b"),
        "migrate-7",
    )
    assert loop.time() == start
    assert pipeline_lock("orders") not in locks.holders  # what the gate took, it gave back


async def test_table_locked_wait_then_proceeds() -> None:
    loop = asyncio.get_running_loop()
    locks = Locks({table_lock("a"): "migrate-7"}, {table_lock("a"): loop.time() + 12})
    result = await Gate(locks).pass_through(request(tables=("a",), wait_seconds=30))
    assert result.passed
    assert 12 <= result.waited_seconds <= 12 + MAX_POLL_SECONDS


async def test_a_waiter_polls_less_often_the_longer_it_waits() -> None:
    """Issue #31, problem 4: 40 SyncJobs waiting on one lock polled the Lease ~30 times a
    second (each once a second, for as long as it waited)."""
    looks: list[float] = []
    locks = Locks({table_lock("a"): "migrate-7"})
    holder = locks.holder

    async def counted(lock: str) -> str | None:
        looks.append(asyncio.get_running_loop().time())
        return await holder(lock)

    locks.holder = counted  # type: ignore[method-assign]
    started = asyncio.get_running_loop().time()
    await Gate(locks).pass_through(request(tables=("a",), wait_seconds=60))
    gaps = [later - earlier for earlier, later in itertools.pairwise(looks)]
    assert [round(g) for g in gaps[:4]] == [1, 2, 4, 8]
    assert max(gaps) <= MAX_POLL_SECONDS
    assert len(looks) <= 11
    assert looks[0] - started < 0.01


async def test_table_locked_wait_timeout_skips() -> None:
    locks = Locks({table_lock("a"): "migrate-7"})
    result = await Gate(locks).pass_through(request(tables=("a",), wait_seconds=30))
    assert (result.passed, result.reason, result.waited_seconds) == (False, "TableLocked", 30)
    assert locks.holders == {table_lock("a"): "migrate-7"}


async def test_a_ddl_job_takes_the_table_locks_itself() -> None:
    locks = Locks()
    result = await Gate(locks).pass_through(request(tables=("a",), ddl=True))
    assert result.held == (pipeline_lock("orders"), table_lock("a"))
    assert locks.holders[table_lock("a")] == "orders-1"


async def test_on_locks_acquired_called_after_lock_success() -> None:
    locks = Locks()
    seen: list[tuple[dict[str, str], GateResult]] = []

    async def acquired(_: LockRequest, result: GateResult) -> None:
        seen.append((dict(locks.holders), result))

    result = await Gate(locks, on_acquired=acquired).pass_through(request())
    [(holders_then, told)] = seen
    assert holders_then == {pipeline_lock("orders"): "orders-1"}  # called with the locks held
    assert told == result


async def test_on_skip_called_when_lock_unavailable() -> None:
    skipped: list[GateResult] = []

    async def on_skip(_: LockRequest, result: GateResult) -> None:
        skipped.append(result)

    async def never(_: LockRequest, __: GateResult) -> None:
        raise AssertionError("no locks were acquired")

    locks = Locks({pipeline_lock("orders"): "other"})
    await Gate(locks, on_acquired=never, on_skip=on_skip).pass_through(request())
    assert [r.reason for r in skipped] == ["PipelineLocked"]
