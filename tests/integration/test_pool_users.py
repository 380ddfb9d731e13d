"""Each pool's workers reach Redis as their own ACL user (issue #13, problem 4): everything a
worker does works with it, and nothing else does."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError

from support import redis_server
from support.redis_server import RedisServer
from treadle.core.messages import TaskMessage
from treadle.services import keys, pool_users, queues
from treadle.services.results import ResultStream
from treadle.worker.serving import WorkerOptions, serve

POOL, OTHER = "wf-mine", "wf-theirs"
UID = "uid-mine"


@pytest.fixture
async def operator_client(
    redis: aioredis.Redis, redis_server_process: RedisServer
) -> AsyncIterator[aioredis.Redis]:
    client = queues.connect(redis_server_process.url)
    yield client
    await client.acl_deluser(keys.pool_user(POOL), keys.pool_user(OTHER))
    await client.aclose()


@pytest.fixture
async def users(
    operator_client: aioredis.Redis, redis_server_process: RedisServer
) -> pool_users.PoolUsers:
    made = await pool_users.PoolUsers.start(operator_client, redis_server_process.url)
    await made.ensure(POOL, "team-a")
    await made.ensure(OTHER, "team-b")
    return made


def url_of(users: pool_users.PoolUsers, server: RedisServer, pool: str) -> str:
    return pool_users.worker_url(server.url, keys.pool_user(pool), users.password(pool))


def message(task: str, args: list[str], item: int | None = None) -> TaskMessage:
    guards = {
        "circuitBreaker": {"failureThreshold": 3, "openSeconds": 30},
        "rateLimit": {"perSecond": 100, "burst": 10},
    }
    return TaskMessage(
        UID, "team-a/wf", task, item, 1, {"command": {"args": args}}, 10, guards=guards
    )


async def test_a_pools_workers_do_all_their_work_as_the_pools_user(
    operator_client: aioredis.Redis, users: pool_users.PoolUsers, redis_server_process: RedisServer
) -> None:
    """Reading, running behind a breaker and a bucket, storing outputs, publishing results, and
    the reaper re-delivering a dead worker's message: all with the pool's own user."""
    results = ResultStream(operator_client, "operator")
    served: dict[str, dict[str, set[str] | None]] = {POOL: {UID: None}}
    assert await results.read(served, 10, 1) == []
    big = json.dumps({"rows": ["x" * 100] * 100})
    await results.enqueue(POOL, [message("big", ["echo", big]), message("small", ["echo", "1"])])
    await results.enqueue(POOL, [message(f"child{i}", ["echo", str(i)], item=i) for i in range(3)])
    worker_client = queues.connect(url_of(users, redis_server_process, POOL))
    dead = queues.TaskQueue(worker_client, POOL, "dead-worker")
    assert len(await dead.read(1, 100)) == 1  # taken by a worker that then dies
    stop = asyncio.Event()
    options = WorkerOptions(
        url_of(users, redis_server_process, POOL), POOL, "live", reap_idle_seconds=0.6
    )
    serving = asyncio.create_task(serve(options, stop))
    seen: dict[str, object] = {}
    for _ in range(100):
        for received in await results.read(served, 10, 200):
            seen[received.result.task] = received.result.outcome
            await results.ack({POOL: [received.id]})
        if len(seen) == 5:
            break
    stop.set()
    await asyncio.wait_for(serving, 30)
    await worker_client.aclose()
    assert seen == dict.fromkeys(["big", "small", "child0", "child1", "child2"], "succeeded")
    assert results.set_aside == 0
    stored = await operator_client.get(keys.output_key(POOL, UID, "big", None))
    assert json.loads(stored) == json.loads(big)
    assert await operator_client.exists(keys.bucket_hash("team-a", "task:big"))  # its own bucket


@pytest.mark.parametrize(
    "command",
    [
        ("XRANGE", keys.tasks_stream(OTHER), "-", "+"),  # another pool's task messages
        ("XADD", keys.results_stream(OTHER), "*", "result", "{}"),  # a forged result
        ("GET", keys.output_key(OTHER, "uid-theirs", "t", None)),  # another pool's output
        ("XRANGE", keys.dead_letters(OTHER), "-", "+"),
        ("HSET", keys.breaker_hash("team-b", "task:t"), "opened_at", "1"),
        ("FLUSHALL",),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("EVAL", "while true do end", "0"),  # would stall Redis for every tenant
        ("SCRIPT", "LOAD", "return 1"),
        ("CONFIG", "GET", "requirepass"),
        ("ACL", "LIST"),
        ("PUBLISH", "anything", "x"),
        ("CLIENT", "KILL", "TYPE", "normal"),
    ],
)
async def test_a_pools_user_reaches_nothing_else(
    users: pool_users.PoolUsers, redis_server_process: RedisServer, command: tuple[str, ...]
) -> None:
    client = queues.connect(url_of(users, redis_server_process, POOL))
    try:
        with pytest.raises(NoPermissionError):
            await client.execute_command(*command)
    finally:
        await client.aclose()


async def test_the_users_and_scripts_are_made_again_after_redis_forgot_them(
    operator_client: aioredis.Redis, users: pool_users.PoolUsers, redis_server_process: RedisServer
) -> None:
    """Redis keeps no ACL users or scripts over a restart: the operator's next pod check makes
    them again (each pass of ensure)."""
    await operator_client.acl_deluser(keys.pool_user(POOL))
    await operator_client.script_flush()
    client = queues.connect(url_of(users, redis_server_process, POOL))
    try:
        with pytest.raises(AuthenticationError):
            await client.ping()
        await users.ensure(POOL, "team-a")
        queue = queues.TaskQueue(client, POOL, "w")
        await queue.ensure_groups()
        await ResultStream(operator_client, "operator").enqueue(POOL, [message("t", ["true"])])
        [delivery] = await queue.read(1, 100)
        assert await queue.finish([(delivery, None)]) == [False]  # the script runs by hash
        assert await queue.reap(0, 3) == queues.ReapReport()
    finally:
        await client.aclose()


async def test_a_gone_pools_user_can_no_longer_log_in(
    users: pool_users.PoolUsers, redis_server_process: RedisServer
) -> None:
    await users.drop([POOL])
    client = queues.connect(url_of(users, redis_server_process, POOL))
    try:
        with pytest.raises(AuthenticationError):
            await client.ping()
    finally:
        await client.aclose()


async def test_a_redis_url_without_a_password_is_refused(operator_client: aioredis.Redis) -> None:
    with pytest.raises(pool_users.PoolUsersUnavailable, match="no password"):
        await pool_users.PoolUsers.start(operator_client, "redis://127.0.0.1:6379/0")


async def test_a_redis_whose_default_user_needs_no_password_is_refused(
    operator_client: aioredis.Redis, redis_server_process: RedisServer
) -> None:
    await operator_client.execute_command("ACL", "SETUSER", "default", "nopass")
    try:
        with pytest.raises(pool_users.PoolUsersUnavailable, match="without a password"):
            await pool_users.PoolUsers.start(operator_client, redis_server_process.url)
    finally:
        await operator_client.execute_command(
            "ACL", "SETUSER", "default", "resetpass", f">{redis_server_process.password}"
        )


async def test_the_operator_may_not_be_refused_acl(
    users: pool_users.PoolUsers, redis_server_process: RedisServer
) -> None:
    """A Redis user without ACL rights (a managed Redis) is told what to do."""
    client = queues.connect(url_of(users, redis_server_process, POOL))
    try:
        with pytest.raises(pool_users.PoolUsersUnavailable, match="ACL"):
            await pool_users.PoolUsers.start(client, url_of(users, redis_server_process, POOL))
    finally:
        await client.aclose()


async def test_a_worker_that_redis_does_not_know_yet_waits_for_its_user_instead_of_exiting(
    operator_client: aioredis.Redis,
    users: pool_users.PoolUsers,
    redis_server_process: RedisServer,
) -> None:
    """After a Redis restart the pool's user is back at the operator's next pod check; a worker
    that exited meanwhile would sit in a restart back-off for minutes."""
    await users.drop([POOL])
    refused = asyncio.Event()

    class Refusals(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "no Redis yet" in record.getMessage():
                refused.set()

    handler, workers_log = Refusals(), logging.getLogger("treadle.worker.serving")
    workers_log.addHandler(handler)
    stop = asyncio.Event()
    options = WorkerOptions(url_of(users, redis_server_process, POOL), POOL, "early")
    serving = asyncio.create_task(serve(options, stop))
    await asyncio.wait_for(refused.wait(), 10)  # refused at least once, and still serving
    assert not serving.done()
    await users.ensure(POOL, "team-a")
    results = ResultStream(operator_client, "operator")
    served: dict[str, dict[str, set[str] | None]] = {POOL: {UID: None}}
    await results.enqueue(POOL, [message("t", ["echo", "1"])])
    seen = []
    for _ in range(50):
        seen += await results.read(served, 10, 200)
        if seen:
            break
    stop.set()
    await asyncio.wait_for(serving, 30)
    workers_log.removeHandler(handler)
    assert [received.result.outcome for received in seen] == ["succeeded"]


async def test_a_restart_of_redis_is_noticed_so_the_users_are_made_again_at_once(
    tmp_path: Path,
) -> None:
    """A Redis restarted with its AOF keeps the data but no ACL user: the fault suite's workers
    waited up to 30 s (the next pod check) to log in again."""
    from support.faults import restart_redis

    server = redis_server.start(tmp_path / "redis")
    client = queues.connect(server.url)
    try:
        users = await pool_users.PoolUsers.start(client, server.url)
        assert not await users.restarted(every_seconds=0)  # the first look
        assert not await users.restarted(every_seconds=0)
        restart_redis(server)
        assert await users.restarted(every_seconds=0)
        assert not await users.restarted(every_seconds=0)
    finally:
        await client.aclose()
        server.stop()
