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
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from treadle.core.messages import INLINE_OUTPUT_LIMIT_BYTES, MessageError, TaskMessage, TaskResult
from treadle.services import scripts
from treadle.services.keys import (
    DATA_MARKER,
    REJECTED,
    dead_letters,
    done_hash,
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


OutputT = TypeVar("OutputT", bound=Hashable)

REJECTED_KEPT = 1000
REJECTED_SHOWN_CHARS = 2048
OUTPUT_TTL_SECONDS = 7 * 86400
"""How long a large output stays in Redis: long enough for its workflow to finish and for a
manual retry of what reads it."""


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


def connect(url: str) -> aioredis.Redis:
    """A client with string responses and health checks (the only way Treadle opens Redis)."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url, decode_responses=True, health_check_interval=30, socket_keepalive=True
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

    async def ensure_groups(self) -> None:
        await create_group(self.client, self.stream, WORKERS_GROUP)
        await create_group(self.client, self.results, OPERATOR_GROUP)

    async def enqueue(self, messages: Sequence[TaskMessage]) -> list[str]:
        async with self.client.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.xadd(self.stream, message.encode())  # type: ignore[arg-type]
            ids: list[str] = await pipe.execute()
        return ids

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

    async def already_succeeded(self, deliveries: Sequence[Delivery]) -> list[bool]:
        async with self.client.pipeline(transaction=False) as pipe:
            for delivery in deliveries:
                message = delivery.message
                pipe.hexists(done_hash(self.pool, message.workflow_uid), message.key)
            found: list[bool] = await pipe.execute()
        return [bool(f) for f in found]

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
                moved.append(result)
            if len(pipe):
                await pipe.execute()
        return moved

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
            failed = TaskResult(
                workflow_uid=message.workflow_uid,
                workflow=message.workflow,
                task=message.task,
                item=message.item,
                attempt=message.attempt,
                outcome="failed",
                error=reason,
                finished_at=time.time(),
                run=message.run,
            )
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


@dataclass(frozen=True)
class Received:
    """A result read from a pool's result stream; `id` is its entry id there."""

    pool: str
    id: str
    result: TaskResult


class ResultStream:
    """The operator's side of the pools' result streams.  The consumer name is stable per
    operator, so an operator that restarts first re-reads the results it had not acknowledged.

    A result counts only when it names a workflow that the pool whose stream it came from
    serves: a pool's workers can write no other pool's stream (their Redis user), so no task's
    code can forge a result for a workflow of another pool."""

    def __init__(self, client: aioredis.Redis, consumer: str) -> None:
        self.client = client
        self.consumer = consumer
        self._pools_ready: set[str] = set()
        self._backlog: dict[str, str] = {}
        """Pools whose unacknowledged results are still to be read again, with the cursor."""
        self.set_aside = 0
        """Entries set aside as no result Treadle wrote, since this stream was made."""
        self.asides: list[tuple[str, str]] = []
        """(pool, reason) of the entries set aside since the driver last took them."""

    async def ensure_marker(self) -> bool:
        """True when Redis is new or lost its data (the data marker was gone, even if a worker
        made its streams again first).  Then the pools' groups are made again too."""
        missing = bool(await self.client.set(DATA_MARKER, "1", nx=True))
        if missing:
            self._pools_ready.clear()
        return missing

    async def intact(self) -> bool:
        """Whether Redis still holds the operator's data (its marker)."""
        return bool(await self.client.exists(DATA_MARKER))

    async def _ensure_pools(self, pools: Iterable[str]) -> None:
        """Makes the groups of pools not seen since the start (or since Redis lost its data);
        their unacknowledged results are read again first."""
        new = [pool for pool in pools if pool not in self._pools_ready]
        if not new:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for pool in new:
                pipe.xgroup_create(tasks_stream(pool), WORKERS_GROUP, id="0", mkstream=True)
                pipe.xgroup_create(results_stream(pool), OPERATOR_GROUP, id="0", mkstream=True)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
                raise reply
        for pool in new:
            self._pools_ready.add(pool)
            self._backlog.setdefault(pool, "0")

    async def read(
        self, served: Mapping[str, Collection[str]], count: int, block_ms: int
    ) -> list[Received]:
        """Results from these pools' streams (pool: the uids of the workflows it serves); the
        unacknowledged ones first, then new ones, waiting up to `block_ms` for those.  An entry
        that is no result, or names a workflow its pool does not serve, is set aside."""
        if not served:
            await asyncio.sleep(block_ms / 1000)
            return []
        await self._ensure_pools(served)
        backlog = {pool: self._backlog[pool] for pool in served if pool in self._backlog}
        # One read for all: re-reads where a backlog is left (which never waits), new results
        # elsewhere.
        streams = {results_stream(pool): backlog.get(pool, ">") for pool in served}
        reply: Any = await self.client.xreadgroup(
            OPERATOR_GROUP,
            self.consumer,
            streams,  # type: ignore[arg-type]
            count=count,
            block=None if backlog else block_ms,
        )
        batches: dict[str, list[Any]] = {name: batch for name, batch in reply or []}
        for pool in backlog:
            entries = batches.get(results_stream(pool)) or []
            if entries:
                self._backlog[pool] = entries[-1][0]
            else:
                del self._backlog[pool]
        received: list[Received] = []
        junk: dict[str, list[tuple[str, dict[str, str], str]]] = {}
        for pool, uids in served.items():
            for entry_id, fields in batches.get(results_stream(pool)) or []:
                if not fields:  # deleted while pending
                    continue
                try:
                    result = TaskResult.decode(fields)
                except MessageError as error:
                    junk.setdefault(pool, []).append((entry_id, fields, str(error)))
                    continue
                if result.workflow_uid not in uids:
                    reason = (
                        f"a result for workflow {result.workflow_uid} in the stream of pool "
                        f"{pool}, which does not serve it"
                    )
                    junk.setdefault(pool, []).append((entry_id, fields, reason))
                    continue
                received.append(Received(pool, entry_id, result))
        for pool, entries in junk.items():
            await set_aside(self.client, results_stream(pool), OPERATOR_GROUP, entries, REJECTED)
            self.set_aside += len(entries)
            self.asides += [(pool, reason) for _, _, reason in entries]
        return received

    def read_backlog_again(self) -> None:
        """The next reads start with this consumer's unacknowledged results again: a pass that
        failed after reading may have dropped some of them."""
        self._backlog = dict.fromkeys(self._pools_ready, "0")

    async def load_outputs(
        self, keys: Mapping[OutputT, str], *, limit_bytes: int
    ) -> dict[OutputT, Any]:
        """Stored outputs by their keys; one whose key is gone is left out, and so is every
        one when together they are more than limit_bytes (their sizes are asked first)."""
        if not keys:
            return {}
        names = list(keys.values())
        sizes: list[int] = []
        async with self.client.pipeline(transaction=False) as pipe:
            for start in range(0, len(names), 1000):
                for name in names[start : start + 1000]:
                    pipe.strlen(name)
            sizes = await pipe.execute()
        if sum(sizes) > limit_bytes:
            return {}
        found: dict[OutputT, Any] = {}
        owners = list(keys)
        for start in range(0, len(names), 1000):
            values: list[Any] = await self.client.mget(names[start : start + 1000])
            for owner, value in zip(owners[start : start + 1000], values, strict=True):
                if value is not None:
                    found[owner] = json.loads(value)
        return found

    async def ack(self, ids: Mapping[str, Sequence[str]]) -> None:
        """Acknowledges results by pool (pool: entry ids)."""
        if any(ids.values()):
            async with self.client.pipeline(transaction=False) as pipe:
                for pool, entries in ids.items():
                    if entries:
                        pipe.xack(results_stream(pool), OPERATOR_GROUP, *entries)
                        pipe.xdel(results_stream(pool), *entries)
                await pipe.execute()

    async def forget_workflow(self, uid: str, pool: str, *, outputs: bool) -> None:
        await self.forget_workflows([(uid, pool, outputs)])

    async def forget_workflows(self, gone: Sequence[tuple[str, str, bool]]) -> None:
        """Deletes finished or deleted workflows' keys (uid, its dedicated pool, with stored
        outputs?): their idempotency records, their pools' streams and their stored outputs
        (SPEC: a workflow's Redis keys go when it finishes or is deleted).  Two round trips
        however many workflows."""
        if not gone:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for uid, pool, outputs in gone:
                if outputs:
                    pipe.smembers(outputs_index(pool, uid))
            indexed: list[Any] = await pipe.execute()
        doomed: list[str] = []
        members = iter(indexed)
        for uid, pool, outputs in gone:
            doomed += [done_hash(pool, uid), tasks_stream(pool), results_stream(pool)]
            doomed += [dead_letters(pool), pool_rejected(pool)]
            if outputs:
                doomed += [*sorted(next(members)), outputs_index(pool, uid)]
            self._pools_ready.discard(pool)
            self._backlog.pop(pool, None)
        async with self.client.pipeline(transaction=False) as pipe:
            for start in range(0, len(doomed), 500):
                pipe.unlink(*doomed[start : start + 500])
            await pipe.execute()

    async def enqueue(self, pool: str, messages: Sequence[TaskMessage]) -> None:
        if messages:
            await self._ensure_pools([pool])
            await TaskQueue(self.client, pool, self.consumer).enqueue(messages)

    async def depth(self, pools: Sequence[str]) -> QueueDepth:
        """How much work waits in these pools' task and result streams, and how many poison
        messages their reapers dead-lettered, for the operator's gauges."""
        async with self.client.pipeline(transaction=False) as pipe:
            for pool in pools:
                pipe.xinfo_groups(tasks_stream(pool))
                pipe.xinfo_groups(results_stream(pool))
                pipe.xlen(dead_letters(pool))
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        waiting = in_flight = results = poison = 0
        for tasks, finished, letters in zip(*[iter(replies)] * 3, strict=True):
            for group in tasks if isinstance(tasks, list) else []:
                waiting += int(group.get("lag") or 0)
                in_flight += int(group.get("pending") or 0)
            for group in finished if isinstance(finished, list) else []:
                results += int(group.get("lag") or 0) + int(group.get("pending") or 0)
            poison += letters if isinstance(letters, int) else 0
        return QueueDepth(waiting, in_flight, results, poison)


@dataclass(frozen=True)
class QueueDepth:
    waiting: int
    """Attempts enqueued and not yet read by a worker."""
    in_flight: int
    """Attempts read by a worker and not yet finished."""
    results: int
    """Results the operator has not applied yet."""
    poison: int
    """Messages the reaper dead-lettered as poison."""
