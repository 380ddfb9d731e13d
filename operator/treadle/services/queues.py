"""The task queue on Redis streams (key names in treadle.services.keys).

Layout (one Redis, prefix `treadle:`):

| key | type | what |
|---|---|---|
| `treadle:pool:<pool>:tasks` | stream, group `workers` | attempts for one pool's workers |
| `treadle:pool:<pool>:results` | stream, group `operator` | their results, for the operator |
| `treadle:pool:<pool>:wf:<uid>:done` | hash | idempotency, see below |
| `treadle:pool:<pool>:wf:<uid>:out:...` | string | stored outputs (with a TTL) |
| `treadle:pool:<pool>:dlq` | stream | poison messages the reaper gave up on, with the reason |

Each pool's workers have their own Redis user, allowed only their pool's keys
(treadle.services.pool_users), so every stream a worker can write is its own pool's: the
operator knows which pool a result came from by the stream it read it from.

The idempotency hash holds `<key>` (the message id) once an attempt of that task item
succeeded, and `<key>#<attempt>` once a failed attempt was reported.

The queue is keyed by pool, not by workflow: a workflow's dedicated workers are a pool of one
workflow, and a shared pool serves many (SPEC, Worker pools).

Delivery is at least once; what makes it effectively once is the idempotency hash: a worker
skips a message whose key already succeeded, and `finish` publishes a result and acknowledges in
one script, so a result is published at most once per success (or per failed attempt) even when
the reaper re-delivered the message to a second worker.

This module is the workers' side (and the helpers both sides use); the operator's side is
treadle.services.results.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from treadle.core import tasklogs
from treadle.core.messages import (
    INLINE_OUTPUT_LIMIT_BYTES,
    MessageError,
    TaskMessage,
    TaskResult,
    TaskStart,
)
from treadle.services import scripts
from treadle.services.keys import (
    ALL_TASKS,
    cancel_hash,
    dead_letters,
    done_hash,
    live_log_key,
    log_budget,
    log_key,
    logs_index,
    output_key,
    outputs_index,
    pool_rejected,
    results_stream,
    tasks_stream,
)

log = logging.getLogger(__name__)

WORKERS_GROUP = "workers"
OPERATOR_GROUP = "operator"
REAPER_CONSUMER = "reaper"

REJECTED_KEPT = 1000
REJECTED_SHOWN_CHARS = 2048
OUTPUT_TTL_SECONDS = 7 * 86400
"""How long a large output stays in Redis: long enough for its workflow to finish and for a
manual retry of what reads it."""
LIVE_LOG_TTL_SECONDS = 3600
"""A running attempt's copy is refreshed every few seconds while it writes; this long after its
last refresh it goes (its worker died, and a new attempt writes its own)."""
LOG_TTL_SECONDS = 7 * 86400
"""Attempt logs outlive their workflow's end (a succeeded workflow's logs are still read); they
go when it is deleted, or after this long."""


@dataclass(frozen=True)
class Delivery:
    """A message handed to this consumer; `id` is its stream entry id."""

    id: str
    message: TaskMessage


@dataclass(frozen=True)
class ReapReport:
    republished: int = 0
    dead_lettered: int = 0


async def set_aside(
    client: aioredis.Redis,
    stream: str,
    group: str,
    junk: Sequence[tuple[str, dict[str, str], str]],
    into: str,
) -> None:
    """Moves stream entries that are no message or result Treadle wrote to the capped stream
    `into` with the reason, so that one bad entry never stops those behind it."""
    async with client.pipeline(transaction=True) as pipe:
        for entry_id, fields, reason in junk:
            shown = json.dumps(fields)[:REJECTED_SHOWN_CHARS]
            entry = {"stream": stream, "id": entry_id, "reason": reason, "fields": shown}
            pipe.xadd(into, entry, maxlen=REJECTED_KEPT, approximate=True)  # type: ignore[arg-type]
        ids = [entry_id for entry_id, _, _ in junk]
        pipe.xack(stream, group, *ids)
        pipe.xdel(stream, *ids)
        await pipe.execute()
    for entry_id, _, reason in junk:
        log.warning("%s entry %s set aside in %s: %s", stream, entry_id, into, reason)


async def create_group(client: aioredis.Redis, stream: str, group: str) -> bool:
    """Creates a consumer group (and its stream); False when it existed already."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise
        return False
    return True


def is_missing_group(error: Exception) -> bool:
    """A stream or group is gone: Redis restarted without its data."""
    return isinstance(error, ResponseError) and "NOGROUP" in str(error)


class EvictingRedis(RuntimeError):
    """A Redis that may evict keys would drop tasks, results and idempotency records."""


async def refuse_eviction(client: aioredis.Redis) -> None:
    """Raises EvictingRedis unless Redis's maxmemory-policy is `noeviction` (INFO, which
    managed Redis services allow where they rename CONFIG)."""
    memory: dict[str, Any] = await client.info("memory")
    policy = str(memory.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        raise EvictingRedis(
            f"Redis has maxmemory-policy {policy}: it may evict task messages, results and "
            "idempotency records, losing work. Set maxmemory-policy noeviction (the chart's "
            "sidecar does) and size maxmemory for the backlog."
        )


async def add_messages(
    client: aioredis.Redis, pool: str, messages: Sequence[TaskMessage]
) -> list[str]:
    """Adds attempts to a pool's task stream, in one round trip; their entry ids."""
    async with client.pipeline(transaction=False) as pipe:
        for message in messages:
            pipe.xadd(tasks_stream(pool), message.encode())  # type: ignore[arg-type]
        ids: list[str] = await pipe.execute()
    return ids


def connect(url: str) -> aioredis.Redis:
    """A client with string responses and health checks (the only way Treadle opens Redis).
    Bytes that are no UTF-8 (a task's code can write any) decode to U+FFFD rather than failing
    the whole reply they came in, every pool's entries with them."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        decode_responses=True,
        encoding_errors="replace",
        health_check_interval=30,
        socket_keepalive=True,
    )
    return client


class TaskQueue:
    """One pool's task stream, seen by one consumer (a worker process, or the reaper)."""

    def __init__(self, client: aioredis.Redis, pool: str, consumer: str) -> None:
        self.client = client
        self.pool = pool
        self.consumer = consumer
        self.stream = tasks_stream(pool)
        self.results = results_stream(pool)
        self._finish = scripts.Bound(scripts.FINISH, client)
        self._reap = scripts.Bound(scripts.REAP, client)
        self._store_log = scripts.Bound(scripts.STORE_LOG, client)

    async def ensure_groups(self) -> None:
        await create_group(self.client, self.stream, WORKERS_GROUP)
        await create_group(self.client, self.results, OPERATOR_GROUP)

    async def enqueue(self, messages: Sequence[TaskMessage]) -> list[str]:
        return await add_messages(self.client, self.pool, messages)

    async def read(self, count: int, block_ms: int) -> list[Delivery]:
        """New messages for this consumer; waits up to `block_ms` when there are none."""
        reply: Any = await self.client.xreadgroup(
            WORKERS_GROUP, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        deliveries, junk = [], []
        for _, entries in reply or []:
            for entry_id, fields in entries:
                if fields is None:  # deleted while pending
                    continue
                try:
                    deliveries.append(Delivery(entry_id, TaskMessage.decode(fields)))
                except MessageError as error:
                    junk.append((entry_id, fields, str(error)))
        if junk:
            await set_aside(self.client, self.stream, WORKERS_GROUP, junk, pool_rejected(self.pool))
        return deliveries

    async def already_settled(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Which deliveries need not run: their key already succeeded (idempotency), or their
        workflow was terminated while their task was part of its DAG."""
        async with self.client.pipeline(transaction=False) as pipe:
            for delivery in deliveries:
                message = delivery.message
                pipe.hexists(done_hash(self.pool, message.workflow_uid), message.key)
                pipe.hmget(cancel_hash(self.pool, message.workflow_uid), message.task, ALL_TASKS)
            found: list[Any] = await pipe.execute()
        return [bool(done or any(gone)) for done, gone in zip(found[::2], found[1::2], strict=True)]

    async def recorded(self, messages: Sequence[TaskMessage]) -> list[bool]:
        """Which attempts' ends are recorded already (their success, or this attempt's
        failure): published before, so not to be read and published again."""
        async with self.client.pipeline(transaction=False) as pipe:
            for message in messages:
                done = done_hash(self.pool, message.workflow_uid)
                pipe.hmget(done, message.key, f"{message.key}#{message.attempt}")
            found: list[Any] = await pipe.execute()
        return [any(pair) for pair in found]

    async def cancelled(self, deliveries: Sequence[Delivery]) -> set[str]:
        """The entry ids among `deliveries` whose task was cancelled: its workflow was
        terminated (its exit tasks are not: they run after)."""
        if not deliveries:
            return set()
        async with self.client.pipeline(transaction=False) as pipe:
            for delivery in deliveries:
                message = delivery.message
                pipe.hmget(cancel_hash(self.pool, message.workflow_uid), message.task, ALL_TASKS)
            found: list[Any] = await pipe.execute()
        return {d.id for d, hit in zip(deliveries, found, strict=True) if any(hit)}

    async def keep_alive(self, deliveries: Sequence[Delivery]) -> None:
        """Resets the idle time of in-flight messages so the reaper leaves them alone."""
        if deliveries:
            await self.client.xclaim(
                self.stream,
                WORKERS_GROUP,
                self.consumer,
                0,
                [d.id for d in deliveries],
                justid=True,
            )

    async def store_outputs(self, results: Sequence[TaskResult]) -> list[TaskResult]:
        """Results with their outputs stored under their own keys (kept OUTPUT_TTL_SECONDS)
        and a reference; a small output also stays in the result as a copy, which status may
        inline.  Every success is stored, even a null output: the operator reads a forEach
        child's output by its key, and a missing key means a lost output, never null."""
        moved: list[TaskResult] = []
        async with self.client.pipeline(transaction=False) as pipe:
            for result in results:
                if result.outcome == "succeeded" and result.output_ref is None:
                    encoded = json.dumps(result.output)
                    key = output_key(
                        self.pool, result.workflow_uid, result.task, result.item, result.run
                    )
                    pipe.set(key, encoded, ex=OUTPUT_TTL_SECONDS)
                    index = outputs_index(self.pool, result.workflow_uid)
                    pipe.sadd(index, key)
                    pipe.expire(index, OUTPUT_TTL_SECONDS)
                    small = len(encoded) <= INLINE_OUTPUT_LIMIT_BYTES and result.item is None
                    result = result.stored_at(key, keep_copy=small)
                if result.log is not None:
                    result = await self._stored_log(result, pipe)
                moved.append(result)
            if len(pipe):
                await pipe.execute()
        return moved

    async def _stored_log(self, result: TaskResult, pipe: Any) -> TaskResult:
        """The result with its attempt's log queued for storing in `pipe` (kept
        LOG_TTL_SECONDS, within the workflow's budget) and its key in place of the text."""
        uid = result.workflow_uid
        key = log_key(self.pool, uid, result.task, result.item, result.attempt, result.run)
        await self._store_log(
            keys={
                "log": key,
                "live": live_log_key(key),
                "budget": log_budget(self.pool, uid),
                "index": logs_index(self.pool, uid),
            },
            args={
                "text": result.log,
                "limit": tasklogs.WORKFLOW_LOG_BUDGET_BYTES,
                "ttl_seconds": LOG_TTL_SECONDS,
                "over_note": tasklogs.over_budget_note(),
            },
            client=pipe,
        )
        return dataclasses.replace(result, log=None, log_ref=key)

    async def store_live_logs(self, running: Sequence[tuple[TaskMessage, str]]) -> None:
        """What running attempts have written so far (their live copies, overwritten each
        time, and deleted when the final log is stored); short-lived, since a worker that
        died leaves one behind."""
        if not running:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for message, text in running:
                uid = message.workflow_uid
                key = log_key(
                    self.pool, uid, message.task, message.item, message.attempt, message.run
                )
                pipe.set(live_log_key(key), text, ex=LIVE_LOG_TTL_SECONDS)
                pipe.sadd(logs_index(self.pool, uid), live_log_key(key))
                pipe.expire(logs_index(self.pool, uid), LOG_TTL_SECONDS)
            await pipe.execute()

    async def announce(self, starts: Sequence[TaskStart]) -> None:
        """Tells the operator of attempts that began (and run a while), on the result stream
        its results travel on: no API write per task, one round trip per batch."""
        if not starts:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for start in starts:
                pipe.xadd(self.results, start.encode())  # type: ignore[arg-type]
            await pipe.execute()

    async def finish(self, done: Sequence[tuple[Delivery, TaskResult | None]]) -> list[bool]:
        """Publishes each result (None: skip, the key already succeeded) and acknowledges, in
        one pipeline; returns which results were published (False: a duplicate)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for delivery, result in done:
                if result is None:
                    pipe.xack(self.stream, WORKERS_GROUP, delivery.id)
                    pipe.xdel(self.stream, delivery.id)
                    continue
                message = delivery.message
                field = (
                    message.key
                    if result.outcome == "succeeded"
                    else (f"{message.key}#{message.attempt}")
                )
                await self._finish(
                    keys={
                        "tasks": self.stream,
                        "done": done_hash(self.pool, message.workflow_uid),
                        "results": self.results,
                    },
                    args={
                        "group": WORKERS_GROUP,
                        "message_id": delivery.id,
                        "done_field": field,
                        **result.encode(),
                        "ttl_seconds": OUTPUT_TTL_SECONDS,
                    },
                    client=pipe,
                )
            replies: list[Any] = await pipe.execute()
        published = []
        index = 0
        for _, result in done:
            if result is None:
                index += 2
                published.append(False)
            else:
                published.append(replies[index] == 1)
                index += 1
        return published

    async def reap(self, min_idle_ms: int, max_redeliveries: int, count: int = 100) -> ReapReport:
        """Re-publishes messages idle longer than `min_idle_ms` (their worker died), or
        dead-letters them once they were re-published `max_redeliveries` times, reporting
        their attempts failed (so the engine retries or dead-letters the task by its policy
        instead of waiting for it forever)."""
        pending = await self.client.xpending_range(
            self.stream, WORKERS_GROUP, min="-", max="+", count=count, idle=min_idle_ms
        )
        ids: list[str] = [str(entry["message_id"]) for entry in pending]
        if not ids:
            return ReapReport()
        async with self.client.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xrange(self.stream, entry_id, entry_id, count=1)
            found: list[Any] = await pipe.execute()
        republished = dead = 0
        junk: list[tuple[str, dict[str, str], str]] = []
        for entry_id, entries in zip(ids, found, strict=True):
            if not entries:
                continue  # acknowledged meanwhile
            try:
                message = TaskMessage.decode(entries[0][1])
            except MessageError as error:
                junk.append((entry_id, entries[0][1], str(error)))
                continue
            reason = f"poison: its worker went silent {message.redeliveries + 1} times"
            failed = message.failure(reason, time.time())
            outcome = await self._reap(
                keys={
                    "tasks": self.stream,
                    "dead_letters": dead_letters(self.pool),
                    "results": self.results,
                },
                args={
                    "group": WORKERS_GROUP,
                    "consumer": REAPER_CONSUMER,
                    "message_id": entry_id,
                    "min_idle_ms": min_idle_ms,
                    "max_redeliveries": max_redeliveries,
                    "reason": reason,
                    **failed.encode(),
                },
            )
            republished += outcome == 1
            dead += outcome == 2
        if junk:
            await set_aside(self.client, self.stream, WORKERS_GROUP, junk, pool_rejected(self.pool))
        if republished or dead:
            log.warning(
                "reaped pool %s: %d re-published, %d dead-lettered", self.pool, republished, dead
            )
        return ReapReport(republished, dead)

    async def dead_letters(self, count: int = 100) -> list[dict[str, str]]:
        entries: Any = await self.client.xrange(dead_letters(self.pool), count=count)
        return [{"id": entry_id, **fields} for entry_id, fields in entries]
