"""Breakers and buckets in a real Redis, shared by a namespace's workers, matching the pure
machines."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from support.redis_server import RedisServer
from treadle.core import breakers
from treadle.services import queues
from treadle.services.guards import BreakerSettings, Guards, RateSettings

SETTINGS = BreakerSettings(failure_threshold=5, open_seconds=30)


@pytest.fixture
async def guards(redis: aioredis.Redis, redis_server_process: RedisServer) -> AsyncIterator[Guards]:
    client = queues.connect(redis_server_process.url)
    yield Guards(client)
    await client.aclose()


async def test_the_breaker_opens_after_5_failures_fails_fast_and_half_opens(guards: Guards) -> None:
    target = "http://api:80"
    for second in range(5):
        assert await guards.admit("ns", target, SETTINGS, now=second)
        await guards.record("ns", target, False, SETTINGS, now=second)
    # Open: every worker fails fast without calling the target.
    assert not await guards.admit("ns", target, SETTINGS, now=10)
    assert not await guards.admit("ns", target, SETTINGS, now=33.9)
    # Half-open after 30 s: one trial call, the next caller still fails fast.
    assert await guards.admit("ns", target, SETTINGS, now=34)
    assert not await guards.admit("ns", target, SETTINGS, now=34.5)
    await guards.record("ns", target, True, SETTINGS, now=35)
    assert await guards.admit("ns", target, SETTINGS, now=35.1)


async def test_a_failed_trial_reopens_the_breaker(guards: Guards) -> None:
    for second in range(5):
        await guards.record("ns", "task:x", False, SETTINGS, now=second)
    assert await guards.admit("ns", "task:x", SETTINGS, now=40)
    await guards.record("ns", "task:x", False, SETTINGS, now=41)
    assert not await guards.admit("ns", "task:x", SETTINGS, now=70)
    assert await guards.admit("ns", "task:x", SETTINGS, now=71)


async def test_the_redis_breaker_follows_the_pure_machine(guards: Guards) -> None:
    pattern = [False, True, False, False, False, False, False, True, False, False]
    state, now = breakers.Breaker(), 0.0
    for index, succeeded in enumerate(pattern * 4):
        now += 7.5 if index % 3 else 1.0
        allowed, state = breakers.admit(state, now, SETTINGS.open_seconds)
        assert await guards.admit("ns", "same", SETTINGS, now=now) == allowed, index
        if allowed:
            state = breakers.record(state, succeeded, now, SETTINGS.failure_threshold)
            await guards.record("ns", "same", succeeded, SETTINGS, now=now)


async def test_the_bucket_is_shared_and_paces_after_the_burst(guards: Guards) -> None:
    rate = RateSettings(per_second=2, burst=3)
    waits = [await guards.take("ns", "http://api:80", rate, now=100.0) for _ in range(4)]
    assert waits == [0, 0, 0, 0.5]
    assert await guards.take("ns", "http://api:80", rate, now=100.5) == 0


async def test_the_server_clock_is_used_when_no_time_is_given(guards: Guards) -> None:
    assert await guards.admit("ns", "clock", SETTINGS)
    assert await guards.take("ns", "clock", RateSettings(per_second=1, burst=1)) == 0


async def test_another_namespaces_failures_open_no_breaker_of_yours(guards: Guards) -> None:
    """A python task's target is its name: two tenants' tasks called `fetch` shared a breaker."""
    for second in range(5):
        await guards.record("team-a", "task:fetch", False, SETTINGS, now=second)
    assert not await guards.admit("team-a", "task:fetch", SETTINGS, now=6)
    assert await guards.admit("team-b", "task:fetch", SETTINGS, now=6)
