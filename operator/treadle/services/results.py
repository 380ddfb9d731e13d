"""The operator's side of the queue: the pools' result streams it reads (counting a result
only for a workflow its pool serves), stored outputs it loads for templates, the attempts it
enqueues, and the keys of finished workflows it deletes.  Key names in treadle.services.keys;
the worker's side is treadle.services.queues."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis

from treadle.core import jsonvalues
from treadle.core.messages import MessageError, Report, TaskMessage, decode_report
from treadle.core.pools import Load, is_shared
from treadle.core.tasklogs import Address
from treadle.services.keys import (
    ALL_TASKS,
    CANCEL_TTL_SECONDS,
    DATA_MARKER,
    REJECTED,
    cancel_hash,
    dead_letters,
    done_hash,
    live_log_key,
    log_budget,
    log_key,
    logs_index,
    outputs_index,
    pool_rejected,
    results_stream,
    tasks_stream,
)
from treadle.services.queues import OPERATOR_GROUP, WORKERS_GROUP, add_messages, set_aside

log = logging.getLogger(__name__)

OutputT = TypeVar("OutputT", bound=Hashable)
LOG_READ_BATCH = 16
"""Attempt logs read in one round trip (at most 4 MiB of them)."""


@dataclass(frozen=True)
class Received:
    """A result read from a pool's result stream; `id` is its entry id there."""

    pool: str
    id: str
    result: Report


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
        self.repairs: list[tuple[str, str]] = []
        """(stream, what was wrong) of the streams repaired since the driver last took them."""
        self.lost_results: set[str] = set()
        """Pools whose results stream was repaired since the driver last took them: results
        in it may be lost."""

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
        self, served: Mapping[str, Mapping[str, Collection[str] | None]], count: int, block_ms: int
    ) -> list[Received]:
        """Results from these pools' streams (pool: uid of each workflow it serves: the tasks
        it runs for it, None for all); the unacknowledged ones first, then new ones, waiting up
        to `block_ms` for those.  An entry that is no result, or names a workflow or task its
        pool does not run, is set aside."""
        if not served:
            await asyncio.sleep(block_ms / 1000)
            return []
        await self._ensure_pools(served)
        backlog = {pool: self._backlog[pool] for pool in served if pool in self._backlog}
        # One read for all: re-reads where a backlog is left (which never waits), new results
        # elsewhere.
        streams = {results_stream(pool): backlog.get(pool, ">") for pool in served}
        try:
            reply: Any = await self.client.xreadgroup(
                OPERATOR_GROUP,
                self.consumer,
                streams,  # type: ignore[arg-type]
                count=count,
                block=None if backlog else block_ms,
            )
        except aioredis.ResponseError:
            # A pool's stream is broken (deleted, or replaced by another type: its workers'
            # Redis user can do either): each pool is read apart, and a broken one repaired.
            reply = await self._read_apart({pool: backlog.get(pool, ">") for pool in served}, count)
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
                    result = decode_report(fields)
                except MessageError as error:
                    junk.setdefault(pool, []).append((entry_id, fields, str(error)))
                    continue
                except Exception as error:  # whatever a forged entry makes decoding raise
                    reason = f"not a task result: {type(error).__name__}"
                    junk.setdefault(pool, []).append((entry_id, fields, reason))
                    continue
                if result.workflow_uid not in uids:
                    reason = (
                        f"a result for workflow {result.workflow_uid} in the stream of pool "
                        f"{pool}, which does not serve it"
                    )
                    junk.setdefault(pool, []).append((entry_id, fields, reason))
                    continue
                tasks = uids[result.workflow_uid]
                if tasks is not None and result.task not in tasks:
                    reason = (
                        f"a result for task {result.task} of workflow {result.workflow_uid} in "
                        f"the stream of pool {pool}, which does not run it"
                    )
                    junk.setdefault(pool, []).append((entry_id, fields, reason))
                    continue
                received.append(Received(pool, entry_id, result))
        for pool, entries in junk.items():
            await set_aside(self.client, results_stream(pool), OPERATOR_GROUP, entries, REJECTED)
            self.set_aside += len(entries)
            self.asides += [(pool, reason) for _, _, reason in entries]
        return received

    async def _read_apart(self, cursors: Mapping[str, str], count: int) -> list[Any]:
        """Each pool's results read on its own (pool: cursor), never waiting; a broken
        stream is repaired, not read, and its pool noted in `lost_results`."""
        reply: list[Any] = []
        for pool, cursor in cursors.items():
            stream = results_stream(pool)
            try:
                found: Any = await self.client.xreadgroup(
                    OPERATOR_GROUP,
                    self.consumer,
                    {stream: cursor},
                    count=count,
                )
            except aioredis.ResponseError as error:
                await self.repair(stream, OPERATOR_GROUP, error)
                self.lost_results.add(pool)
                continue
            reply += found or []
        return reply

    async def repair(self, stream: str, group: str, error: Exception) -> None:
        """Makes a broken stream usable again: a key of another type is replaced by a stream,
        a missing stream or group made again (its lost entries are lost to its own pool only:
        their attempts time out and are retried)."""
        if "WRONGTYPE" in str(error):
            await self.client.unlink(stream)
        try:
            await self.client.xgroup_create(stream, group, id="0", mkstream=True)
        except aioredis.ResponseError as again:
            if "BUSYGROUP" not in str(again):
                raise
        self.repairs.append((stream, "WRONGTYPE" if "WRONGTYPE" in str(error) else "NOGROUP"))
        log.warning("repaired Redis stream %s (%s)", stream, error)

    async def forget_outcomes(self, pool: str, uids: Iterable[str]) -> None:
        """Deletes these workflows' records of outcomes on `pool`, so that their attempts
        whose results were lost run again rather than being skipped as settled."""
        names = [done_hash(pool, uid) for uid in uids]
        if names:
            await self.client.unlink(*names)

    def read_backlog_again(self) -> None:
        """The next reads start with this consumer's unacknowledged results again: a pass that
        failed after reading may have dropped some of them."""
        self._backlog = dict.fromkeys(self._pools_ready, "0")

    async def load_outputs(
        self, keys: Mapping[OutputT, str], *, limit_bytes: int
    ) -> dict[OutputT, Any]:
        """Stored outputs by their keys; one whose key is gone is left out, and so is every
        one when together they are more than limit_bytes (their sizes are asked first)."""
        sizes = await self.output_sizes(keys)
        if sum(sizes.values()) > limit_bytes:
            return {}
        return await self.read_outputs(keys, sizes)

    async def output_sizes(self, keys: Mapping[OutputT, str]) -> dict[OutputT, int]:
        """The size of each stored output (0: gone)."""
        owners, names = list(keys), list(keys.values())
        sizes: list[Any] = []
        for start in range(0, len(names), 1000):
            async with self.client.pipeline(transaction=False) as pipe:
                for name in names[start : start + 1000]:
                    pipe.strlen(name)
                sizes += await pipe.execute(raise_on_error=False)
        return {
            owner: size if isinstance(size, int) else 0
            for owner, size in zip(owners, sizes, strict=True)
        }

    async def read_outputs(
        self, keys: Mapping[OutputT, str], sizes: Mapping[OutputT, int]
    ) -> dict[OutputT, Any]:
        """The stored outputs of the sizes `output_sizes` found, reading no more than that of
        each (a worker's user could make one grow meanwhile: it is then left out)."""
        found: dict[OutputT, Any] = {}
        wanted = [(owner, name) for owner, name in keys.items() if sizes.get(owner)]
        for start in range(0, len(wanted), 1000):
            batch = wanted[start : start + 1000]
            async with self.client.pipeline(transaction=False) as pipe:
                for owner, name in batch:
                    pipe.getrange(name, 0, sizes[owner])  # one byte more tells it grew
                values: list[Any] = await pipe.execute(raise_on_error=False)
            for (owner, name), value in zip(batch, values, strict=True):
                if not isinstance(value, str) or len(value.encode()) != sizes[owner]:
                    log.warning("stored output %s left out: it changed as it was read", name)
                    continue
                try:  # a worker's user can overwrite a stored output with anything
                    found[owner] = jsonvalues.loads(value)
                except ValueError as error:
                    log.warning("stored output %s left out: %s", name, error)
        return found

    async def ack(self, ids: Mapping[str, Sequence[str]]) -> None:
        """Acknowledges results by pool (pool: entry ids)."""
        if any(ids.values()):
            async with self.client.pipeline(transaction=False) as pipe:
                for pool, entries in ids.items():
                    if entries:
                        pipe.xack(results_stream(pool), OPERATOR_GROUP, *entries)
                        pipe.xdel(results_stream(pool), *entries)
                # A stream its pool's workers broke meanwhile answers with an error: its
                # entries are gone with it; the next read repairs it.
                await pipe.execute(raise_on_error=False)

    async def forget_workflow(
        self, uid: str, pool: str, *, outputs: bool, logs: bool = False
    ) -> None:
        await self.forget_workflows([(uid, pool, outputs)], logs=logs)

    async def forget_workflows(
        self, gone: Sequence[tuple[str, str, bool]], *, logs: bool = False
    ) -> None:
        """Deletes finished or deleted workflows' keys (uid, a pool it ran on, with stored
        outputs?): their idempotency records, their stored outputs, with `logs` (deleted
        workflows) their attempts' logs, and the streams of their own pools (a WorkerPool's
        stay) (SPEC: a workflow's Redis keys go when it finishes or is deleted).  Two round
        trips however many workflows."""
        if not gone:
            return
        if logs:  # deleted: the attempts still queued for them are dropped, not run
            async with self.client.pipeline(transaction=False) as pipe:
                for uid, pool, _outputs in gone:
                    pipe.hset(cancel_hash(pool, uid), ALL_TASKS, "deleted")
                    pipe.expire(cancel_hash(pool, uid), CANCEL_TTL_SECONDS)
                await pipe.execute()
        async with self.client.pipeline(transaction=False) as pipe:
            for uid, pool, outputs in gone:
                if outputs:
                    pipe.smembers(outputs_index(pool, uid))
                if logs:
                    pipe.smembers(logs_index(pool, uid))
            indexed: list[Any] = await pipe.execute()
        doomed: list[str] = []
        members = iter(indexed)
        for uid, pool, outputs in gone:
            doomed.append(done_hash(pool, uid))
            if outputs:
                doomed += [*sorted(next(members)), outputs_index(pool, uid)]
            if logs:
                doomed += [*sorted(next(members)), logs_index(pool, uid), log_budget(pool, uid)]
            if is_shared(pool):
                continue  # a WorkerPool's streams serve its other workflows
            doomed += [tasks_stream(pool), results_stream(pool)]
            doomed += [dead_letters(pool), pool_rejected(pool)]
            self._pools_ready.discard(pool)
            self._backlog.pop(pool, None)
        async with self.client.pipeline(transaction=False) as pipe:
            for start in range(0, len(doomed), 500):
                pipe.unlink(*doomed[start : start + 500])
            await pipe.execute()

    async def read_logs(
        self,
        uid: str,
        run: int | None,
        wanted: Sequence[tuple[str, Address]],
        *,
        limit_bytes: int,
    ) -> list[tuple[str | None, bool]]:
        """The stored logs of a workflow's attempts (pool, address): each its text (None: not
        stored, or not yet) and whether that is a running attempt's copy so far.  Read a few
        at a time, and no more once `limit_bytes` were read (the list is then shorter than
        `wanted`)."""
        found: list[tuple[str | None, bool]] = []
        read = 0
        for start in range(0, len(wanted), LOG_READ_BATCH):
            batch = wanted[start : start + LOG_READ_BATCH]
            keys = [log_key(pool, uid, a.task, a.item, a.attempt, run) for pool, a in batch]
            texts = await self.client.mget([k for key in keys for k in (key, live_log_key(key))])
            for final, live in zip(texts[::2], texts[1::2], strict=True):
                if read >= limit_bytes:
                    return found
                text = final if final is not None else live
                found.append(
                    (None if text is None else str(text), final is None and live is not None)
                )
                read += 0 if text is None else len(text)
        return found

    async def read_log(self, key: str) -> str | None:
        """One attempt's stored log (None: none was stored, or it expired)."""
        text = await self.client.get(key)
        return None if text is None else str(text)

    async def cancel(
        self, pools: Iterable[str], uid: str, tasks: Collection[str], at: float
    ) -> None:
        """Tells the workers of `pools` that these tasks of the workflow were terminated: they
        cancel the attempts of them they hold and skip those they read later (for
        CANCEL_TTL_SECONDS).  Its exit tasks are not among them: they run after."""
        if not tasks:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for pool in pools:
                pipe.hset(cancel_hash(pool, uid), mapping=dict.fromkeys(tasks, str(at)))
                pipe.expire(cancel_hash(pool, uid), CANCEL_TTL_SECONDS)
            await pipe.execute()

    async def enqueue(self, pool: str, messages: Sequence[TaskMessage]) -> None:
        """Adds attempts to a pool's task stream; one its workers' user broke (replaced by
        another type of key) is repaired first."""
        if not messages:
            return
        await self._ensure_pools([pool])
        try:
            await add_messages(self.client, pool, messages)
        except aioredis.ResponseError as error:
            if "WRONGTYPE" not in str(error):
                raise
            await self.repair(tasks_stream(pool), WORKERS_GROUP, error)
            await add_messages(self.client, pool, messages)

    async def loads(self, pools: Sequence[str]) -> dict[str, Load]:
        """Each pool's attempts waiting and running (a finished attempt's entry is deleted,
        so the task stream's length less its pending entries is what no worker took yet)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for pool in pools:
                pipe.xlen(tasks_stream(pool))
                pipe.xpending(tasks_stream(pool), WORKERS_GROUP)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        found: dict[str, Load] = {}
        for pool, length, pending in zip(pools, replies[::2], replies[1::2], strict=True):
            held = int(pending.get("pending") or 0) if isinstance(pending, dict) else 0
            total = length if isinstance(length, int) else 0
            found[pool] = Load(backlog=max(0, total - held), running=held)
        return found

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
