"""Fixtures the integration modules share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from support.redis_server import RedisServer
from treadle.services import queues


@pytest.fixture
async def client(
    redis: aioredis.Redis, redis_server_process: RedisServer
) -> AsyncIterator[aioredis.Redis]:
    """A string-decoding client as the services use (the `redis` fixture emptied the db)."""
    connection = queues.connect(redis_server_process.url)
    yield connection
    await connection.aclose()
