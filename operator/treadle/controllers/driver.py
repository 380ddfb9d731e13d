"""The engine driver: feeds results and timer ticks to the pure engine and carries out its
answer (enqueue attempts, keep worker pods, write status).

It runs as one loop of the worker runtime beside kopf.  Each pass reads the results waiting
(up to 20,000) and advances every workflow that got results or whose retry, deadline or status
write is due, side by side (at most ADVANCE_CONCURRENCY at once).  Results are acknowledged
only once the status that records them is written, so a crash re-reads them (the engine
ignores what it already applied).

Results are applied, and the next tasks enqueued, as soon as they arrive (passes are at least
PASS_INTERVAL_SECONDS apart), while a workflow's status is written at most once a second, never
once per task: the write, and the acknowledgement of the results it records, waits for the
workflow's next write slot.  Each write is the merge patch from the status last written (so it
carries only what changed).

A manual retry (the `treadle.dev/retry` annotation) is applied on the next pass: the engine
revives the dead-lettered work, the status is written, then the annotation is removed.  Events
tell the workflow's story: started, dead letters, retried, succeeded or failed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2 as httpx
from lightkube import ApiError, AsyncClient
from redis.exceptions import ConnectionError as RedisConnectionError

from treadle.api import RETRY_ANNOTATION
from treadle.api.workflows import WorkflowSpec, WorkflowStatus
from treadle.controllers import metrics, outputs
from treadle.controllers.tracked import Tracked
from treadle.controllers.workers import PoolReadiness, WorkerOwner, no_pools
from treadle.core import engine, notices, pacing, patches, timestamps
from treadle.core.asides import AsideNotices
from treadle.core.messages import Report, TaskMessage, TaskResult
from treadle.runtime import Backoff, CancelToken, Directive
from treadle.runtime.offload import offload
from treadle.services import events, kube
from treadle.services.keys import REJECTED
from treadle.services.pool_users import PoolUsers
from treadle.services.results import ResultStream

log = logging.getLogger(__name__)

PASS_INTERVAL_SECONDS = 0.01
"""The floor between passes: a task's successor is enqueued within about this of its result."""
GAUGE_SECONDS = 15.0
BATCH = 1000
MAX_PER_PASS = 20_000
ADVANCE_CONCURRENCY = 32
NAMESPACE_CPU_PER_PASS_SECONDS = 0.1
"""Engine CPU (templates rendered mostly) the workflows of one namespace may spend in one
pass; the rest of them are advanced on the next, after the other namespaces had theirs: a
tenant whose templates are costly slows its own workflows, not everyone's."""
"""Workflows advanced at once in a pass: a thousand small workflows are not advanced one API
round trip after another, and a pass never asks more of the API server than a few dozen
requests at a time."""
FAILURE_BACKOFF = Backoff(initial_seconds=2, max_seconds=60, factor=2, jitter=0)
"""A workflow whose advance failed is advanced again after 2 s, doubled with each failure in a
row up to a minute (a workflow in a namespace being deleted fails for minutes)."""
RETRY_AFTER_FAILURE = timedelta(seconds=FAILURE_BACKOFF.initial_seconds)
_UNJITTERED = random.Random(0)
"""FAILURE_BACKOFF has no jitter: this random source is never drawn from."""
TERMINATE_HOLD = timedelta(seconds=3)
"""How long a terminated workflow on pods of its own keeps its pods and Redis user after its
workers were told: they check every second, and cancel what they hold once they see it."""


def _cancelling(tracked: Tracked, now: datetime) -> bool:
    """Whether a terminated workflow's own workers may still be learning of it."""
    sent = tracked.cancel_sent
    return not tracked.who.shared and sent is not None and now < sent + TERMINATE_HOLD


LOST_RESULT = (
    "the results stream of the pool it ran on was found deleted or replaced (by code holding "
    "that pool's Redis user) and was made again: its result may be lost"
)


def _timed(call: Callable[[], engine.Step]) -> tuple[engine.Step, float]:
    """A call's result and the CPU time its thread spent on it."""
    started = time.thread_time()
    return call(), time.thread_time() - started


def _away(error: BaseException) -> bool:
    """Whether a failure says a server is away or overloaded (not what one workflow holds)."""
    if isinstance(error, ApiError):
        return error.status.code in (None, 429) or (error.status.code or 0) >= 500
    away = (OSError, ConnectionError, TimeoutError, RedisConnectionError, httpx.TransportError)
    return isinstance(error, away)


@dataclass
class Driver:
    results: ResultStream
    api: AsyncClient
    worker_redis_url: str
    """Where workers reach Redis; with pool users, the user and password are the pool's."""
    worker_image: str
    users: PoolUsers | None = None
    """Makes each pool's Redis user; None: workers get `worker_redis_url` as it is."""
    worker_metrics_port: int = 0
    pool_ready: PoolReadiness = no_pools
    """How many workers of a WorkerPool are ready, and why not more (the pool keeper's)."""
    workflows: dict[str, Tracked] = field(default_factory=dict)
    owner: WorkerOwner = field(init=False)
    """Owns each workflow's worker pods, its pool's Redis user and worker URL."""
    _group_ready: bool = False
    _gauges_at: datetime | None = None
    _orphan_acks: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Result ids (by pool) of workflows forgotten before their status was written."""
    _asides: AsideNotices = field(default_factory=AsideNotices)
    """When each pool's workflows were last told of entries set aside."""
    _deleted: list[tuple[engine.Identity, set[str]]] = field(default_factory=list)
    """Deleted workflows whose Redis keys and pool user are still to delete."""
    _lost_epoch: int = 0
    _namespace_cpu: dict[str, float] = field(default_factory=dict)
    _output_budget: outputs.OutputBudget = field(default_factory=outputs.OutputBudget)
    """Stored-output bytes loaded for all workflows' templates together."""
    """Engine CPU each namespace spent in the last pass (the lightest go first)."""
    """Counts the times Redis was found without our data (new, or flushed); every tracked
    workflow re-enqueues its in-flight attempts once per such loss."""

    def __post_init__(self) -> None:
        self.owner = WorkerOwner(
            self.api,
            self.worker_redis_url,
            self.worker_image,
            self.users,
            self.worker_metrics_port,
            self.pool_ready,
        )

    def track(self, body: dict[str, Any], spec: WorkflowSpec, status: WorkflowStatus) -> None:
        """Starts (or resumes, or updates) driving a valid workflow from `status` as the API
        server holds it."""
        meta = body["metadata"]
        who = engine.Identity.of(meta, status.worker_pool)
        uid = who.uid
        previous = self.workflows.get(uid)
        if previous is not None and previous.status.run_generation == status.run_generation:
            # The same run with a mutable field edited (suspend, shutdown, the deadline): this
            # driver's status is newer than the API server's (it holds what was applied and
            # enqueued since its last write), so only the spec and generation change.
            previous.spec, previous.generation = spec, meta.get("generation")
            previous.status.observed_generation = status.observed_generation
            previous.look_again()
            return
        tracked = Tracked(who, spec, status, meta.get("generation"), datetime.now(UTC))
        # The status it comes with is the API server's (a handler may be writing it now): the
        # first progress write waits its turn like any other.
        tracked.written = status.wire()
        tracked.written_at = tracked.due
        if previous is not None:
            # A run started again (its spec changed around the webhook): the new status comes
            # from the API server, and what was applied since the last write is applied again
            # (the engine ignores what is not of its run).
            tracked.ledger = previous.ledger.carried_over()
            tracked.workers.url_given = previous.workers.url_given
            tracked.requeued_epoch = previous.requeued_epoch
            self._output_budget.release(previous.outputs)
        self.workflows[uid] = tracked

    def worker_pod_gone(self, workflow_uid: str) -> None:
        """A worker pod of this workflow died or went: replace it on the next pass."""
        tracked = self.workflows.get(workflow_uid)
        if tracked is not None:
            tracked.workers.checked_at = None
            tracked.look_again()

    def tracks(self, uid: str) -> bool:
        return uid in self.workflows

    def request_retry(self, uid: str, target: str, resource_version: str) -> None:
        """A `treadle.dev/retry` annotation was seen: revive on the next pass."""
        tracked = self.workflows.get(uid)
        if tracked is not None and tracked.retry_requests.seen(
            RETRY_ANNOTATION, target, resource_version
        ):
            tracked.due = datetime.now(UTC)

    def forget(self, uid: str) -> None:
        gone = self.workflows.pop(uid, None)
        if gone is not None:
            self._output_budget.release(gone.outputs)
            for pool, entry in gone.ledger.abandoned():
                self._orphan_acks[pool].append(entry)

    def deleted(self, uid: str, namespace: str, used: set[str] | None = None) -> None:
        """The workflow was deleted: forget it, and delete its Redis keys, its attempts' logs
        on every pool it `used` (and its own pool's user and worker URL) on the next pass."""
        tracked = self.workflows.get(uid)
        self.forget(uid)
        if tracked is not None:
            self._deleted.append((tracked.who, tracked.pools | (used or set())))
        else:  # finished before: its logs, and a workflow with pods of its own may have keys
            who = engine.Identity.of({"uid": uid, "namespace": namespace})
            self._deleted.append((who, {who.pool} | (used or set())))

    async def execute(self, cancel: CancelToken) -> Directive:
        try:
            return await self._pass()
        except Exception:
            # Redis may have restarted without its data: make the group again next time; and
            # results this pass read but did not get to are read again (the engine ignores
            # those it applied already).
            self._group_ready = False
            self.results.read_backlog_again()
            raise

    async def _pass(self) -> Directive:
        if self._group_ready and not await self.results.intact():
            self._group_ready = False  # flushed, or a new Redis: no error need have told us
        if not self._group_ready:
            if await self.results.ensure_marker():
                self._lost_epoch += 1
                log.warning("the results stream was missing: in-flight attempts are enqueued again")
            self._group_ready = True
        await self.owner.users_again(
            lambda: [t.who for t in self.workflows.values() if not t.status.finished_at]
        )
        now = datetime.now(UTC)
        block_ms = 1000
        upcoming = [t.due for t in self.workflows.values() if t.due is not None]
        if upcoming:
            block_ms = int(max(0.0, min(1.0, (min(upcoming) - now).total_seconds())) * 1000)
        set_aside = self.results.set_aside
        served = self._served()
        read = await self.results.read(served, BATCH, max(1, block_ms))
        # Drain what is already there (up to MAX_PER_PASS) so one pass applies it all.
        while read and len(read) % BATCH == 0 and len(read) < MAX_PER_PASS:
            more = await self.results.read(served, BATCH, 1)
            if not more:
                break
            read += more
        if self.results.set_aside > set_aside:
            metrics.RESULTS_SET_ASIDE.inc(self.results.set_aside - set_aside)
        if self.results.repairs:
            metrics.STREAMS_REPAIRED.inc(len(self.results.repairs))
            self.results.repairs.clear()
        await self._lost_results(datetime.now(UTC))
        await self._tell_asides(served)
        by_workflow: dict[str, list[Report]] = defaultdict(list)
        ids: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for received in read:
            by_workflow[received.result.workflow_uid].append(received.result)
            ids[received.result.workflow_uid].append((received.pool, received.id))
        now = datetime.now(UTC)
        due = {uid for uid, t in self.workflows.items() if t.due is not None and t.due <= now}
        done, self._orphan_acks = self._orphan_acks, defaultdict(list)
        deleted, self._deleted = self._deleted, []
        try:
            await self._let_go(deleted, outputs=True, logs=True)
        except Exception:
            self._deleted[:0] = deleted
            raise
        work: list[tuple[Tracked, list[Report]]] = []
        for uid in sorted(set(by_workflow) | due):
            tracked = self.workflows.get(uid)
            if tracked is None:  # forgotten while its results were read: gone, or not ours
                for pool, entry in ids.get(uid, []):
                    done[pool].append(entry)
                continue
            tracked.ledger.received(ids.get(uid, []))
            work.append((tracked, by_workflow.get(uid, [])))
        advanced, failure = await self._advance_all(work, now)
        # Only results whose effect is in written status are acknowledged: after a crash the
        # others are read again (the engine ignores what it applied already).
        for pool, entry in advanced:
            done[pool].append(entry)
        await self.results.ack(done)
        if failure is not None:
            raise failure
        if self._gauges_at is None or now - self._gauges_at >= timedelta(seconds=GAUGE_SECONDS):
            await self._set_gauges()
            self._gauges_at = now
        return Directive.proceed()

    async def _advance_all(
        self, work: list[tuple[Tracked, list[Report]]], now: datetime
    ) -> tuple[list[tuple[str, str]], BaseException | None]:
        """Advances the workflows side by side, at most ADVANCE_CONCURRENCY talking to the API
        server at once; returns the result ids safe to acknowledge (by pool), and a failure when
        every workflow failed (the API server or Redis is away: the loop backs off).

        A workflow whose advance fails keeps the results it was given, to apply on its next
        advance (due in RETRY_AFTER_FAILURE, doubling): their ids are already among its
        unacknowledged ones, so a later write must not acknowledge them without them."""
        slots = asyncio.Semaphore(ADVANCE_CONCURRENCY)
        spent: dict[str, float] = defaultdict(float)
        # The namespaces that spent least in the last pass go first.
        work = sorted(work, key=lambda item: self._namespace_cpu.get(item[0].who.namespace, 0.0))

        async def one(tracked: Tracked, results: list[Report]) -> list[tuple[str, str]]:
            given = tracked.ledger.take(results)
            namespace = tracked.who.namespace
            async with slots:
                if spent[namespace] >= NAMESPACE_CPU_PER_PASS_SECONDS:
                    # Its namespace had its share of this pass: next pass, results and all.
                    current = self.workflows.get(tracked.who.uid, tracked)
                    current.ledger.keep(given)
                    current.due = now
                    return []
                try:
                    news = tracked.news
                    acked = await self.advance(tracked, given, now)
                    spent[namespace] += tracked.engine_cpu_seconds
                    tracked.failures = 0
                    if tracked.news != news and tracked.who.uid in self.workflows:
                        tracked.due = now  # what the watch told during the advance is seen next
                    return acked
                except ApiError as error:
                    if error.status.code == 404 and not await self._exists(tracked):
                        self.forget(tracked.who.uid)  # it went with its namespace
                        return []
                    self._keep(tracked, given, now, error)
                    raise
                except BaseException as error:
                    self._keep(tracked, given, now, error)
                    raise

        outcomes = await asyncio.gather(*(one(t, r) for t, r in work), return_exceptions=True)
        self._namespace_cpu = dict(spent)
        for outcome in outcomes:
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
        acked = [entry for outcome in outcomes if isinstance(outcome, list) for entry in outcome]
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        # Only a failure that is nobody's doing (the API server or Redis away) fails the pass
        # and backs the loop off; one workflow's own failure is retried on its own schedule
        # (its `due`), even when it was the only work of the pass.
        everyone = bool(failures) and len(failures) == len(outcomes)
        infrastructure = everyone and all(_away(failure) for failure in failures)
        return acked, failures[0] if infrastructure else None

    def _keep(
        self, tracked: Tracked, given: list[Report], now: datetime, error: BaseException
    ) -> None:
        """A failed advance: its results are kept on the workflow as tracked now (a handler
        may have replaced it) and, unless cancelled, it is advanced again soon."""
        current = self.workflows.get(tracked.who.uid, tracked)
        current.ledger.keep(given)
        if isinstance(error, Exception):
            current.failures += 1
            wait = FAILURE_BACKOFF.delay(current.failures, _UNJITTERED)
            current.due = now + timedelta(seconds=wait)
            log.warning(
                "advancing %s/%s failed (%d in a row); again in %g s",
                tracked.who.namespace,
                tracked.who.name,
                current.failures,
                wait,
                exc_info=error,
            )

    async def _exists(self, tracked: Tracked) -> bool:
        try:
            return await kube.workflow_exists(self.api, tracked.who.namespace, tracked.who.name)
        except Exception:
            return True  # cannot tell: keep it

    async def _set_gauges(self) -> None:
        depth = await self.results.depth(
            sorted({pool for t in self.workflows.values() for pool in t.pools})
        )
        metrics.QUEUE_MESSAGES.labels(state="waiting").set(depth.waiting)
        metrics.QUEUE_MESSAGES.labels(state="in_flight").set(depth.in_flight)
        metrics.QUEUE_MESSAGES.labels(state="results").set(depth.results)
        metrics.POISON_MESSAGES.set(depth.poison)
        metrics.TRACKED_WORKFLOWS.set(len(self.workflows))

    async def advance(
        self, tracked: Tracked, results: list[Report], now: datetime
    ) -> list[tuple[str, str]]:
        """Advances one workflow; returns the results (pool, entry id) now safe to
        acknowledge."""
        who = tracked.who
        # Status replaced by the API server's lacks what was applied since the last write.
        results = tracked.ledger.to_apply(results)
        current, told = self._revive(tracked, now)
        failures, notice = await self.owner.start_overdue(
            who, tracked.spec, current, tracked.workers, now, tracked.pools
        )
        results = [*results, *failures]
        told += [notice] if notice else []
        if tracked.lost_results:
            lost = engine.fail_in_flight(tracked.spec, current, who, LOST_RESULT)
            results += [r for r in lost if tracked.pool_of(r.task) in tracked.lost_results]
            tracked.lost_results = set()
        if tracked.spec.shutdown == "Terminate" and tracked.cancel_sent is None:
            dag = [task.name for task in tracked.spec.tasks]
            await self.results.cancel(sorted(tracked.pools), who.uid, dag, now.timestamp())
            tracked.cancel_sent = now
        await outputs.load(
            self.results,
            who,
            tracked.spec,
            current,
            tracked.outputs,
            tracked.task_pools,
            budget=self._output_budget,
        )
        if tracked.requeued_epoch < self._lost_epoch:
            again = engine.requeue_in_flight(
                tracked.spec,
                tracked.status,
                now=now,
                who=who,
                outputs=tracked.outputs.values,
                rendered=tracked.outputs.rendered,
            )
            await self._enqueue(tracked, again)
            tracked.requeued_epoch = self._lost_epoch
        # In a thread: the engine renders the tenant's templates (each bounded, and at most
        # scheduling.RENDER_SECONDS_PER_CALL of them per call), and the loop stays free for
        # every other workflow, the webhook and the probes meanwhile.  It works on its own
        # copy of status; `rendered` is this workflow's alone, advanced by one pass at a time.
        step, tracked.engine_cpu_seconds = await offload(
            _timed,
            functools.partial(
                engine.advance,
                tracked.spec,
                current,
                results,
                now=now,
                who=who,
                generation=tracked.generation,
                outputs=tracked.outputs.values,
                rendered=tracked.outputs.rendered,
                unavailable=frozenset(tracked.outputs.unloadable),
            ),
        )
        told += step.notices
        new = set(tracked.ledger.fresh((m.key, m.attempt) for m in step.enqueue))
        fresh = [m for m in step.enqueue if (m.key, m.attempt) in new]
        await self._enqueue(tracked, fresh)
        tracked.ledger.enqueued_now(new)
        held = step.finished and _cancelling(tracked, now)
        if step.finished and not held:
            await self.owner.remove(who)
        elif pacing.pods_due(tracked.workers.checked_at, now):
            await self.owner.ensure(who, tracked.spec, tracked.workers, tracked.pools)
            tracked.workers.checked_at = now
        acked: list[tuple[str, str]] = []
        wrote = False
        interval = pacing.write_interval(len(self.workflows))
        if pacing.write_now(
            finished=step.finished,
            retry_asked=tracked.retry is not None,
            written_at=tracked.written_at,
            now=now,
            interval=interval,
        ):
            wire = step.wire
            change = patches.merge_patch(tracked.written, wire)
            if change:
                with metrics.STATUS_WRITE_SECONDS.time():
                    written = await kube.patch_workflow_status(
                        self.api, who.namespace, who.name, change
                    )
                if not written:
                    self.forget(who.uid)
                    return []
            tracked.written, tracked.written_at, wrote = wire, now, True
            acked = tracked.ledger.written()
            if step.finished and not held:
                # Its Redis keys and pool user go with it; a Failed workflow keeps its stored
                # outputs (they expire) for a manual retry of what reads them.
                await self._let_go([(who, tracked.pools)], outputs=step.status.phase == "Succeeded")
                tracked.workers.url_given = False
        else:
            tracked.ledger.applied(results)
        if tracked.retry is not None:
            await self._clear_retry(tracked)
        for notice in told:
            await events.post(
                self.api, tracked.reference, notice.type, notice.reason, notice.message
            )
        for result in results:
            if isinstance(result, TaskResult):
                metrics.TASK_RESULTS.labels(outcome=result.outcome).inc()
        metrics.ATTEMPTS_ENQUEUED.inc(len(step.enqueue))
        metrics.DEAD_LETTERS.inc(step.dead_lettered)
        if step.finished_now:
            metrics.WORKFLOWS_FINISHED.labels(phase=step.status.phase or "").inc()
        tracked.status = step.status
        tracked.due = step.wake_at
        if held:
            assert tracked.cancel_sent is not None
            tracked.due = tracked.cancel_sent + TERMINATE_HOLD
        elif step.finished:
            finished_at = timestamps.parse_optional(tracked.status.finished_at)
            tracked.due = pacing.ttl_due(tracked.spec.ttl_seconds_after_finished, finished_at)
            if tracked.due is not None and tracked.due <= now:
                log.info("deleting %s/%s: ttlSecondsAfterFinished passed", who.namespace, who.name)
                await kube.delete_workflow(self.api, who.namespace, who.name)
                self.forget(who.uid)
            elif tracked.due is None and not tracked.retry_requests.pending:
                self.forget(who.uid)
        else:
            tracked.due = pacing.next_advance(
                now=now,
                wake_at=step.wake_at,
                wants_outputs=step.wants_outputs,
                unwritten_since=None if wrote else tracked.written_at,
                interval=interval,
            )
        if tracked.retry_requests.pending and who.uid in self.workflows:
            tracked.due = now  # a retry asked for while this pass ran is carried out next
        return acked

    def _revive(
        self, tracked: Tracked, now: datetime
    ) -> tuple[WorkflowStatus, list[notices.Notice]]:
        """The status to advance from, with a requested manual retry applied."""
        target = tracked.retry or tracked.retry_requests.take(RETRY_ANNOTATION)
        if target is None:
            return tracked.status, []
        retried = engine.manual_retry(tracked.spec, tracked.status, target, now=now)
        log.info("%s: retry %r: %s", tracked.who.name, target, retried.notice.message)
        metrics.MANUAL_RETRIES.inc(len(retried.revived))
        return retried.status, [retried.notice]

    async def _clear_retry(self, tracked: Tracked) -> None:
        who, target = tracked.who, tracked.retry
        assert target is not None
        version = await kube.clear_annotation(
            self.api, who.namespace, who.name, RETRY_ANNOTATION, target
        )
        tracked.retry_requests.done(RETRY_ANNOTATION)
        tracked.retry_requests.removed(RETRY_ANNOTATION, version)

    async def _lost_results(self, now: datetime) -> None:
        """Pools whose results stream was broken (its workers' user deleted or replaced it)
        and repaired: their workflows forget their records of outcomes there, so that the
        attempts in flight, failed on their next advance, run again when retried."""
        lost, self.results.lost_results = self.results.lost_results, set()
        for pool in sorted(lost):
            hit = [t for t in self.workflows.values() if pool in t.served]
            await self.results.forget_outcomes(pool, [t.who.uid for t in hit])
            for tracked in hit:
                tracked.lost_results.add(pool)
                tracked.due = now

    async def _tell_asides(self, served: dict[str, dict[str, Collection[str] | None]]) -> None:
        """A Warning Event on each workflow whose pool's result stream had entries set aside."""
        asides, self.results.asides = self.results.asides, []
        by_pool: dict[str, list[str]] = defaultdict(list)
        for pool, reason in asides:
            by_pool[pool].append(reason)
        now = datetime.now(UTC)
        for pool, reasons in by_pool.items():
            notice = self._asides.record(pool, reasons, now, stream=REJECTED)
            if notice is None:
                continue
            for uid in served.get(pool, ()):
                tracked = self.workflows.get(uid)
                if tracked is None:  # deleted while this pass read (it raised KeyError)
                    continue
                await events.post(
                    self.api, tracked.reference, notice.type, notice.reason, notice.message
                )

    def _served(self) -> dict[str, dict[str, Collection[str] | None]]:
        """The pools whose results to read, with the workflows each serves and the tasks it
        runs for each: those of the unfinished workflows (a finished one's own pool and
        streams are gone)."""
        served: dict[str, dict[str, Collection[str] | None]] = defaultdict(dict)
        for uid, tracked in self.workflows.items():
            if not tracked.status.finished_at:
                for pool, tasks in tracked.served.items():
                    served[pool][uid] = tasks
        return served

    async def _enqueue(self, tracked: Tracked, messages: list[TaskMessage]) -> None:
        """Each attempt onto the task stream of the pool its task runs on."""
        by_pool: dict[str, list[TaskMessage]] = defaultdict(list)
        for message in messages:
            by_pool[tracked.pool_of(message.task)].append(message)
        for pool, batch in sorted(by_pool.items()):
            await self.results.enqueue(pool, batch)

    async def _let_go(
        self, gone: list[tuple[engine.Identity, set[str]]], *, outputs: bool, logs: bool = False
    ) -> None:
        """Deletes finished or deleted workflows' Redis keys (on every pool they ran on), and
        the users and worker URLs of their own pools."""
        if not gone:
            return
        await self.results.forget_workflows(
            [(who.uid, pool, outputs) for who, used in gone for pool in sorted(used)], logs=logs
        )
        for who, _used in gone:
            if not who.shared:
                self._asides.forget(who.pool)
        await self.owner.let_go([who for who, _used in gone])
