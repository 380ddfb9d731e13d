"""The task worker and the reaper, as actions of the worker runtime.

A worker reads from its pool's stream as many messages as it has free slots, skips what already
succeeded (idempotency), runs the rest concurrently, keeps their messages alive while they run
(so the reaper does not hand them to someone else), and publishes each result and acknowledges
its message as soon as the attempt ends.  The reaper
re-publishes messages whose worker went silent and dead-letters those that keep killing workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.exceptions import ConnectionError as RedisConnectionError

from treadle.core import actions as kinds
from treadle.core import redaction, tasklogs
from treadle.core.messages import WORKER_NAME_LIMIT, TaskMessage, TaskResult, TaskStart
from treadle.core.tasklogs import LogTail
from treadle.runtime import Backoff, CancelToken, Directive, checkpoint
from treadle.services.guards import BreakerSettings, Guards, RateSettings
from treadle.services.queues import Delivery, TaskQueue, is_missing_group
from treadle.worker import interrupts, metrics, runners

if TYPE_CHECKING:
    import aiohttp  # imported when the first http task runs: a worker starts in half the time

Session = Callable[[], "aiohttp.ClientSession"]
"""The worker's HTTP session, made on first use."""

log = logging.getLogger(__name__)

REDIS_BACKOFF = Backoff(initial_seconds=0.5, max_seconds=5.0, factor=2.0, jitter=0.2)
"""How a worker waits to try Redis again (publishing results, or logging in at start)."""
_RNG = random.Random()
DEFAULT_REAP_IDLE_SECONDS = 25.0
LIVE_LOG_SECONDS = 2.0
"""How often what running attempts wrote since is copied to Redis (kubectl treadle logs -f)."""
CANCEL_CHECK_SECONDS = 1.0
"""How often a worker holding attempts asks whether their workflows were terminated."""
START_NOTICE_SECONDS = 1.0
"""An attempt still running this long after it began is announced to the operator (Running)."""
DEFAULT_MAX_REDELIVERIES = 3


async def run_attempt(
    message: TaskMessage,
    session: Session,
    guards: Guards | None = None,
    log: LogTail | None = None,
) -> TaskResult:
    """Runs one attempt behind its target's rate limit and circuit breaker, writing what it
    writes to `log`; a failure is a result, never an exception."""
    target = kinds.target(message.action, message.task)
    namespace = message.namespace
    breaker = message.guards.get("circuitBreaker")
    rate = message.guards.get("rateLimit")
    breaker_settings = (
        BreakerSettings(int(breaker["failureThreshold"]), float(breaker["openSeconds"]))
        if breaker and guards
        else None
    )
    if rate and guards:
        limit = RateSettings(float(rate["perSecond"]), int(rate.get("burst", 1)))
        # The shared bucket says how long until a token is due; no event announces it.
        while (wait := await guards.take(namespace, target, limit)) > 0:
            metrics.RATE_LIMIT_WAIT_SECONDS.labels(target=target).inc(wait)
            await asyncio.sleep(wait)
    started = time.time()
    if breaker_settings and guards and not await guards.admit(namespace, target, breaker_settings):
        metrics.FAIL_FAST.labels(target=target).inc()
        return _result(message, "failed", None, f"circuit open for {target}: failing fast", started)
    result = await _act(message, session, started, LogTail() if log is None else log)
    kind = next(iter(message.action), "unknown")
    metrics.TASKS.labels(action=kind, outcome=result.outcome).inc()
    metrics.TASK_SECONDS.labels(action=kind).observe(time.time() - started)
    if breaker_settings and guards:
        succeeded = result.outcome == "succeeded"
        failures = await guards.record(namespace, target, succeeded, breaker_settings)
        if failures == breaker_settings.failure_threshold:
            metrics.BREAKER_OPEN.labels(target=target).inc()
    return result


async def _act(message: TaskMessage, session: Session, started: float, log: LogTail) -> TaskResult:
    attempt = runners.Attempt(message.timeout_seconds, message.key, session, log)
    result = await _outcome(message, attempt, started)
    if not len(attempt.log) and not attempt.log.dropped:
        return result
    return dataclasses.replace(result, log=attempt.log.text(runners.secret_values()))


async def _outcome(message: TaskMessage, attempt: runners.Attempt, started: float) -> TaskResult:
    try:
        kind, spec = next(iter(message.action.items()))
        output = await runners.runner(kind)(spec, attempt)
    except runners.ActionFailed as error:
        failed = _result(message, "failed", None, str(error), started)
        if error.cause is None:
            return failed
        return dataclasses.replace(failed, details=error.cause.wire())
    except (StopIteration, ValueError, TypeError, LookupError, UnicodeError, OSError) as error:
        # The action itself is unusable here (a NUL in an argument, a bad port, a malformed
        # action): the attempt fails with the reason, instead of the worker leaving the message
        # pending until the reaper calls it poison.
        return _result(message, "failed", None, f"{type(error).__name__}: {error}", started)
    return _result(message, "succeeded", output, None, started)


def _result(
    message: TaskMessage, outcome: str, output: object, error: str | None, started: float
) -> TaskResult:
    return TaskResult(
        **message.identity(),
        outcome="succeeded" if outcome == "succeeded" else "failed",
        output=output,
        # A server may echo a Secret back (`401 invalid api key <key>`): the values the
        # worker holds are masked, as in logs, before the error reaches status and Events.
        error=None
        if error is None
        else redaction.redact(tasklogs.mask(error, runners.secret_values())),
        started_at=started,
        finished_at=time.time(),
    )


@dataclass
class TaskWorker:
    """Runtime action: each execution reads as many messages as there are free slots (the
    blocking read is the wait for work) and starts them; each attempt's result is published and
    acknowledged as soon as it ends, together with whatever else ended in the same moment, so a
    slow task holds up no other and a worker killed mid-way loses only the attempts in hand."""

    queue: TaskQueue
    batch_size: int = 100
    block_ms: int = 1000
    concurrency: int = 32
    keep_alive_seconds: float = DEFAULT_REAP_IDLE_SECONDS / 3
    guards: Guards | None = None
    executed: int = 0
    skipped: int = 0
    draining: bool = False
    """Set on shutdown: take no new work; `idle` is set once the attempts in hand are finished."""
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)
    """Made by the first http task (`_http`)."""
    cancel_check_seconds: float = CANCEL_CHECK_SECONDS
    cancelled: int = 0
    """Attempts cancelled because their workflow was terminated."""
    _in_hand: dict[str, Delivery] = field(default_factory=dict, repr=False)
    _running: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    _attempts: dict[str, asyncio.Task[None]] = field(default_factory=dict, repr=False)
    """The running attempt of each delivery in hand (by entry id)."""
    _cancelling: set[str] = field(default_factory=set, repr=False)
    _watcher: asyncio.Task[None] | None = field(default=None, repr=False)
    _ended: list[tuple[Delivery, TaskResult | None]] = field(default_factory=list, repr=False)
    _flusher: asyncio.Task[None] | None = field(default=None, repr=False)
    _keeper: asyncio.Task[None] | None = field(default=None, repr=False)
    live_log_seconds: float = LIVE_LOG_SECONDS
    _logs: dict[str, LogTail] = field(default_factory=dict, repr=False)
    """The log of each running attempt (by entry id)."""
    _streamer: asyncio.Task[None] | None = field(default=None, repr=False)
    name: str = ""
    """What status calls this worker (its pod's name); default: its consumer's."""
    start_notice_seconds: float = START_NOTICE_SECONDS
    _began: dict[str, float] = field(default_factory=dict, repr=False)
    """When each attempt in hand began (by entry id), until the operator was told of it."""
    _announcer: asyncio.Task[None] | None = field(default=None, repr=False)
    _not_reading: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    """Clear while a read of the stream is under way (what it returns is this worker's)."""

    def __post_init__(self) -> None:
        self.idle.set()
        self._not_reading.set()

    async def execute(self, cancel: CancelToken) -> Directive:
        if self.draining:
            await self.settle()
            return Directive.sleep(3600)
        if len(self._running) >= self.concurrency:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            return Directive.proceed()
        try:
            free = self.concurrency - len(self._running)
            self._not_reading.clear()
            deliveries = await self.queue.read(min(self.batch_size, free), self.block_ms)
        except Exception as error:
            self._not_reading.set()
            if not is_missing_group(error):
                raise
            log.warning(
                "pool %s: the stream's group is gone (Redis lost its data); making it again",
                self.queue.pool,
            )
            await self.queue.ensure_groups()
            return Directive.proceed()
        try:
            if deliveries:
                await self._start(deliveries)
        finally:
            self._not_reading.set()
        return Directive.proceed()

    async def drain(self) -> None:
        """Takes no new work and finishes what it holds: a read already under way may still
        hand this worker messages (they are then pending for it alone), so those are started
        and finished too before the attempts in hand are waited for."""
        self.draining = True
        await self._not_reading.wait()
        await self.settle()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession()
        return self._session

    async def settle(self) -> None:
        """Waits until every attempt in hand has ended and its result is published."""
        while self._running or self._flusher is not None:
            pending = [*self._running, *filter(None, [self._flusher])]
            await asyncio.gather(*pending, return_exceptions=True)
        self.idle.set()

    async def _start(self, deliveries: Sequence[Delivery]) -> None:
        succeeded = await self.queue.already_settled(deliveries)
        skipped = [d for d, done in zip(deliveries, succeeded, strict=True) if done]
        self.skipped += len(skipped)
        metrics.DUPLICATES.inc(len(skipped))
        self._ended.extend((d, None) for d in skipped)
        for delivery, done in zip(deliveries, succeeded, strict=True):
            if not done:
                self.idle.clear()
                self._in_hand[delivery.id] = delivery
                self._began[delivery.id] = time.time()
                attempt = asyncio.create_task(self._attempt(delivery))
                self._running.add(attempt)
                self._attempts[delivery.id] = attempt
                attempt.add_done_callback(self._running.discard)
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep_alive())
        if self._streamer is None:
            self._streamer = asyncio.create_task(self._copy_live_logs())
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_cancelled())
        if self._announcer is None:
            self._announcer = asyncio.create_task(self._announce_starts())
        self._flush_soon()

    async def _attempt(self, delivery: Delivery) -> None:
        tail = self._logs[delivery.id] = LogTail()
        try:
            result = await run_attempt(delivery.message, self._http, self.guards, tail)
        except asyncio.CancelledError:
            if delivery.id not in self._cancelling:
                raise  # the worker is closing: the message stays pending for the reaper
            # Its workflow was terminated: no one waits for a result; the message goes.
            self._cancelling.discard(delivery.id)
            self.cancelled += 1
            metrics.CANCELLED.inc()
            self._ended.append((delivery, None))
            self._flush_soon()
            return
        except Exception:
            # Not a task failure (those are results): a fault of the worker itself.  The
            # message stays pending and is re-delivered by the reaper.
            log.exception("attempt %s failed in the worker", delivery.message.key)
            self._in_hand.pop(delivery.id, None)
            return
        finally:
            self._attempts.pop(delivery.id, None)
            self._logs.pop(delivery.id, None)
            self._began.pop(delivery.id, None)
        self.executed += 1
        self._ended.append((delivery, dataclasses.replace(result, worker=self._name)))
        self._flush_soon()

    def _flush_soon(self) -> None:
        """One flush at a time publishes everything that ended meanwhile."""
        if self._ended and self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        failures = 0
        try:
            while self._ended:
                # Let attempts ending in the same moment join; after a failure, back off.
                await asyncio.sleep(REDIS_BACKOFF.delay(failures, _RNG) if failures else 0)
                ended, self._ended = self._ended, []
                try:
                    results = [r for _, r in ended if r is not None]
                    stored = iter(await self.queue.store_outputs(results))
                    await self.queue.finish(
                        [(d, None if r is None else next(stored)) for d, r in ended]
                    )
                except Exception:
                    # Redis away: keep the results (their messages stay pending, kept alive)
                    # and try again, so that nothing finished is run a second time.
                    log.warning("could not publish %d results; retrying", len(ended), exc_info=True)
                    self._ended[:0] = ended
                    failures += 1
                    continue
                failures = 0
                for delivery, _ in ended:
                    self._in_hand.pop(delivery.id, None)
        finally:
            self._flusher = None
        if not self._running and not self._ended:
            self.idle.set()

    async def _keep_alive(self) -> None:
        while True:
            checkpoint()
            await asyncio.sleep(self.keep_alive_seconds)
            try:
                await self.queue.keep_alive(list(self._in_hand.values()))
            except Exception:  # the reaper may re-deliver; idempotency covers it
                log.warning("could not keep %d messages alive", len(self._in_hand), exc_info=True)

    async def _copy_live_logs(self) -> None:
        """Copies what running attempts wrote to Redis every `live_log_seconds` (those that
        wrote something since the last copy), so that their logs can be followed."""
        copied: dict[str, int] = {}
        while True:
            checkpoint()
            await asyncio.sleep(self.live_log_seconds)
            changed = [
                (self._in_hand[entry], tail)
                for entry, tail in list(self._logs.items())
                if entry in self._in_hand and tail.written != copied.get(entry, 0)
            ]
            copied = {e: n for e, n in copied.items() if e in self._logs}
            if not changed:
                continue
            secrets = runners.secret_values()
            running = [(d.message, tail.text(secrets) or "") for d, tail in changed]
            try:
                await self.queue.store_live_logs(running)
            except Exception:  # Redis away: the next copy has it all
                log.warning("could not copy %d running attempts' logs", len(running))
                continue
            copied.update((d.id, tail.written) for d, tail in changed)

    async def _announce_starts(self) -> None:
        """Every `start_notice_seconds`, tells the operator of the attempts in hand that began
        at least that long ago (each once), so that a long task shows Running on its worker
        within seconds of its start, while a short one costs nothing more than its result."""
        while True:
            checkpoint()
            await asyncio.sleep(self.start_notice_seconds)
            due = time.time() - self.start_notice_seconds
            began = [
                (entry, at) for entry, at in list(self._began.items())
                if at <= due and entry in self._in_hand
            ]  # fmt: skip
            if not began:
                continue
            starts = [
                TaskStart.of(self._in_hand[entry].message, self._name, at) for entry, at in began
            ]
            try:
                await self.queue.announce(starts)
            except Exception:  # Redis away: told next time (or its result says it all)
                log.warning("could not announce %d running attempts", len(starts))
                continue
            for entry, _ in began:
                self._began.pop(entry, None)

    @property
    def _name(self) -> str:
        return (self.name or self.queue.consumer)[:WORKER_NAME_LIMIT]

    async def _watch_cancelled(self) -> None:
        """Cancels the attempts in hand of workflows that were terminated (checked every
        `cancel_check_seconds` while attempts run)."""
        while True:
            checkpoint()
            await asyncio.sleep(self.cancel_check_seconds)
            held = list(self._in_hand.values())
            if not held:
                continue
            try:
                gone = await self.queue.cancelled(held)
            except Exception:  # Redis away: the attempts go on; checked again next time
                log.warning("could not check for terminated workflows", exc_info=True)
                continue
            for delivery in held:
                attempt = self._attempts.get(delivery.id)
                if delivery.id in gone and attempt is not None:
                    log.info("cancelling %s: its workflow was terminated", delivery.message.key)
                    self._cancelling.add(delivery.id)
                    attempt.cancel()

    async def close(self) -> None:
        """Stops: attempts still in hand are abandoned (the reaper re-delivers them)."""
        helpers = [self._flusher, self._keeper, self._watcher, self._streamer, self._announcer]
        tasks = [*self._running, *filter(None, helpers)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


@dataclass
class Reaper:
    """Runtime action: one sweep of stalled messages, then sleep."""

    queue: TaskQueue
    idle_seconds: float = DEFAULT_REAP_IDLE_SECONDS
    max_redeliveries: int = DEFAULT_MAX_REDELIVERIES
    interval_seconds: float = 5.0

    async def execute(self, cancel: CancelToken) -> Directive:
        report = await self.queue.reap(int(self.idle_seconds * 1000), self.max_redeliveries)
        metrics.REAPED.labels(fate="redelivered").inc(report.republished)
        metrics.REAPED.labels(fate="dead_lettered").inc(report.dead_lettered)
        return Directive.sleep(self.interval_seconds)


@dataclass(frozen=True)
class WorkerOptions:
    redis_url: str
    pool: str
    consumer: str
    name: str = ""
    """The worker's name in status (its pod's; default: the consumer)."""
    concurrency: int = 32
    batch_size: int = 100
    reap_idle_seconds: float = DEFAULT_REAP_IDLE_SECONDS
    max_redeliveries: int = DEFAULT_MAX_REDELIVERIES
    drain_seconds: float = 25.0
    """On SIGTERM, how long to let tasks in hand finish (below the pod's grace period)."""
    watchdog: bool = False
    """Run a watchdog process that kills this worker when its event loop freezes."""


async def serve(options: WorkerOptions, stop: asyncio.Event) -> None:
    """Runs the task worker and the reaper of one pool until `stop` is set."""
    from treadle.runtime import Loop, TaskSet
    from treadle.services.queues import connect

    client = connect(options.redis_url)
    queue = TaskQueue(client, options.pool, options.consumer)
    if not await _reach(queue, stop):
        await client.aclose()
        return
    worker = TaskWorker(
        queue,
        guards=Guards(client),
        batch_size=options.batch_size,
        concurrency=options.concurrency,
        keep_alive_seconds=options.reap_idle_seconds / 3,
        name=options.name,
    )
    reaper = Reaper(
        TaskQueue(client, options.pool, f"{options.consumer}-reaper"),
        idle_seconds=options.reap_idle_seconds,
        max_redeliveries=options.max_redeliveries,
        interval_seconds=max(1.0, options.reap_idle_seconds / 5),
    )
    tasks = TaskSet()
    start = Directive.proceed()
    watchdog = None
    if options.watchdog:
        # Killed when frozen for half the reaper's idle time: with the last keep-alive up to
        # a third of it before, and a beat every eighth, under the idle time in all, so its
        # attempts are not handed to another worker while it still runs them.
        watchdog = interrupts.Watchdog(options.reap_idle_seconds / 2)
        watchdog.start()
        tasks.spawn("watchdog", watchdog.beat())
    tasks.spawn("task-worker", Loop("task-worker", worker, tasks.cancel, start=start).run())
    tasks.spawn("reaper", Loop("reaper", reaper, tasks.cancel, start=start).run())
    log.info("worker %s serving pool %s", options.consumer, options.pool)
    try:
        await stop.wait()
        # Drain: finish the tasks in hand (they were read, so no other worker has them) before
        # the loops are cancelled; whatever is left after the grace goes back via the reaper.
        try:
            if options.drain_seconds > 0:
                await asyncio.wait_for(worker.drain(), timeout=options.drain_seconds)
        except TimeoutError:
            log.warning("tasks still running after %.0f s of draining", options.drain_seconds)
    finally:
        stuck = await tasks.shutdown(grace_seconds=5)
        if stuck:
            log.error("loops that would not stop: %s", ", ".join(stuck))
        await worker.close()
        await client.aclose()
        if watchdog is not None:
            watchdog.stop()


async def _reach(queue: TaskQueue, stop: asyncio.Event) -> bool:
    """Waits until Redis lets this worker in (a Redis that restarted knows its pool's user again
    once the operator's next pod check made it, within 30 s), rather than exiting into a
    restart back-off; False when told to stop first."""
    failures = 0
    while not stop.is_set():
        try:
            await queue.ensure_groups()
            return True
        except RedisConnectionError as error:
            failures += 1
            delay = REDIS_BACKOFF.delay(failures, _RNG)
            log.warning("pool %s: no Redis yet (%s); again in %.1f s", queue.pool, error, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    return False
