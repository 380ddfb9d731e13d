"""Lease locks against the real API server: mutual exclusion under contention, expiry, fencing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig

from support.cluster import Cluster
from treadle.controllers.leadership import LEASE_NAME, Leadership
from treadle.services.leases import Held, LeaseStore

ROUNDS = 200
ACQUIRERS = 4


@pytest.fixture
async def api(crds: Cluster, namespace: str) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(KubeConfig.from_file(crds.kubeconfig), namespace=namespace)
    yield client
    await client.close()


@pytest.mark.parametrize("memory", ["reading first", "each with its own remembered copies"])
async def test_concurrent_acquirers_never_see_two_holders(
    api: AsyncClient, namespace: str, memory: str
) -> None:
    remembering = memory != "reading first"
    stores = [
        LeaseStore(api, namespace, known={} if remembering else None) for _ in range(ACQUIRERS)
    ]
    winners_per_round = []
    for round_ in range(ROUNDS):
        taken = await asyncio.gather(
            *(store.take("treadle-pipeline-race", f"run-{i}") for i, store in enumerate(stores))
        )
        winners = [t for t in taken if isinstance(t, Held)]
        losers = {t for t in taken if isinstance(t, str)}
        winners_per_round.append(len(winners))
        assert len(winners) == 1, f"round {round_}: {taken}"
        assert losers <= {winners[0].holder}, f"round {round_}: losers saw {losers}"
        assert await stores[0].release("treadle-pipeline-race", winners[0].holder)
    assert winners_per_round == [1] * ROUNDS


async def test_a_holder_that_stops_renewing_loses_the_lock_after_expiry_and_not_before(
    api: AsyncClient, namespace: str
) -> None:
    start = datetime.now(UTC)
    first = LeaseStore(api, namespace, duration_seconds=60, clock=lambda: start)
    held = await first.take("treadle-pipeline-orders", "run-a")
    assert held == Held("treadle-pipeline-orders", "run-a", 0)
    almost = LeaseStore(api, namespace, clock=lambda: start + timedelta(seconds=59.9))
    assert await almost.take("treadle-pipeline-orders", "run-b") == "run-a"
    assert await almost.holder("treadle-pipeline-orders") == "run-a"
    after = LeaseStore(api, namespace, clock=lambda: start + timedelta(seconds=60))
    assert await after.holder("treadle-pipeline-orders") is None
    taken_over = await after.take("treadle-pipeline-orders", "run-b")
    assert taken_over == Held("treadle-pipeline-orders", "run-b", 1)
    # Fencing: the old holder's renewal fails, and it cannot release what it lost.
    assert not await first.renew(held)
    assert not await first.release("treadle-pipeline-orders", "run-a")
    assert await after.holder("treadle-pipeline-orders") == "run-b"


async def test_a_renewed_lock_stays_held_and_a_released_one_is_free(
    api: AsyncClient, namespace: str
) -> None:
    now = [datetime.now(UTC)]
    store = LeaseStore(api, namespace, duration_seconds=30, clock=lambda: now[0])
    held = await store.take("treadle-table-orders", "migrate-1")
    assert isinstance(held, Held)
    for _ in range(3):
        now[0] += timedelta(seconds=20)
        assert await store.renew(held)
    assert await store.holder("treadle-table-orders") == "migrate-1"
    assert await store.release("treadle-table-orders", "migrate-1")
    assert await store.holder("treadle-table-orders") is None
    again = await store.take("treadle-table-orders", "migrate-2")
    assert again == Held("treadle-table-orders", "migrate-2", 1)


async def test_a_remembered_lease_is_taken_renewed_and_released_in_one_request_each(
    api: AsyncClient, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LeaseStore(api, namespace, known={})
    first = await store.take("treadle-pipeline-remembered", "run-1")
    assert isinstance(first, Held)
    calls: list[str] = []
    for verb in ("get", "create", "replace"):
        real = getattr(api, verb)

        def counted(*args: Any, _verb: str = verb, _real: Any = real, **kwargs: Any) -> Any:
            calls.append(_verb)
            return _real(*args, **kwargs)

        monkeypatch.setattr(api, verb, counted)
    assert await store.renew(first)
    assert await store.release("treadle-pipeline-remembered", "run-1")
    second = await store.take("treadle-pipeline-remembered", "run-2")
    assert second == Held("treadle-pipeline-remembered", "run-2", 1)
    assert calls == ["replace", "replace", "replace"]
    # Released here, then taken by hand elsewhere: the copy says free, so the store writes from
    # it; the API server refuses the stale write, and the store reads who holds it.
    assert await store.release("treadle-pipeline-remembered", "run-2")
    other = LeaseStore(api, namespace)
    assert await other.take("treadle-pipeline-remembered", "by-hand") == Held(
        "treadle-pipeline-remembered", "by-hand", 2
    )
    calls.clear()
    assert await store.take("treadle-pipeline-remembered", "run-3") == "by-hand"
    assert calls == ["replace", "get"]
    # Remembered as held by someone else: confirmed by a fresh read, never trusted as it is.
    assert await other.release("treadle-pipeline-remembered", "by-hand")
    calls.clear()
    assert await store.take("treadle-pipeline-remembered", "run-3") == Held(
        "treadle-pipeline-remembered", "run-3", 3
    )
    assert calls == ["get", "replace"]


async def test_a_standby_leads_once_the_leader_stops_renewing_and_the_old_leader_steps_down(
    api: AsyncClient, namespace: str
) -> None:
    leader = Leadership(LeaseStore(api, namespace), "operator-a", duration_seconds=1)
    held = await leader.acquire()
    keeping = asyncio.create_task(leader.keep(held))
    standby_store = LeaseStore(api, namespace)
    assert await standby_store.holder(LEASE_NAME) == "operator-a"
    # The leader's process freezes (no renewals); the standby's clock is past its Lease.
    keeping.cancel()
    later = datetime.now(UTC) + timedelta(seconds=2)
    standby = Leadership(LeaseStore(api, namespace, clock=lambda: later), "operator-b")
    taken = await asyncio.wait_for(standby.acquire(), timeout=10)
    assert (taken.holder, taken.transitions) == ("operator-b", 1)
    # The old leader wakes up: its next renewal fails and it stops leading.
    await asyncio.wait_for(leader.keep(held), timeout=10)
    await standby.release(taken)
    assert await standby_store.holder(LEASE_NAME) is None
