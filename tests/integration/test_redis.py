"""The tests' Redis is a real redis-server with a password, AOF on, and a fresh database."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError

from support.redis_server import RedisServer


async def test_redis_refuses_clients_without_the_password(
    redis_server_process: RedisServer,
) -> None:
    client = aioredis.Redis(
        host="127.0.0.1", port=redis_server_process.port, retry=Retry(NoBackoff(), retries=0)
    )
    with pytest.raises((AuthenticationError, ResponseError)):
        await client.ping()
    await client.aclose()


async def test_redis_runs_with_append_only_persistence(redis: aioredis.Redis) -> None:
    assert await redis.config_get("appendonly") in ({"appendonly": "yes"}, {b"appendonly": b"yes"})


async def test_each_test_starts_with_an_empty_database(redis: aioredis.Redis) -> None:
    assert await redis.dbsize() == 0
    await redis.set("left-behind", 1)


async def test_another_test_does_not_see_the_first_ones_keys(redis: aioredis.Redis) -> None:
    assert await redis.get("left-behind") is None


async def test_redis_has_streams_with_autoclaim(redis: aioredis.Redis) -> None:
    await redis.xgroup_create("s", "g", id="0", mkstream=True)
    await redis.xadd("s", {"k": "v"})
    await redis.xreadgroup("g", "c1", {"s": ">"})
    claimed = await redis.xautoclaim("s", "g", "c2", min_idle_time=0)
    assert len(claimed[1]) == 1


async def test_the_operator_refuses_a_redis_that_may_evict_keys(
    redis: aioredis.Redis, redis_server_process: RedisServer
) -> None:
    from treadle.services import queues

    client = queues.connect(redis_server_process.url)
    try:
        await queues.refuse_eviction(client)  # Debian's default: noeviction
        await client.config_set("maxmemory-policy", "allkeys-lru")
        with pytest.raises(queues.EvictingRedis, match="maxmemory-policy allkeys-lru"):
            await queues.refuse_eviction(client)
    finally:
        await client.config_set("maxmemory-policy", "noeviction")
        await client.aclose()
