"""The SyncJob scheduler: one loop of the worker runtime drives every SyncJob.

Each execution decides, for every job whose time came (its slot, its retry, its run's lock
renewal or deadline), what the pure decision (`treadle.core.syncs`) says, carries it out, and
writes status; then it arms a timer for the earliest next moment and idles.  kopf timers are
not used: they do not know cron, and one loop with one timer costs nothing between slots.

Each job is looked at in a task of its own, so one job's API round trips hold up no other job;
at most `concurrency` jobs talk to the API server at once.  An attempt that waits
`lockWaitSeconds` for a lock gives up its place while it waits, so it holds up nothing either.
A run is a pod named after the job and its slot: after a crash, the same attempt finds the same
pod (a 409) and adopts it, so a slot never runs twice.  Status is the record of truth: an
operator that restarts mid-run finds `activeRun`, takes its locks again for the same holder, and
watches the pod to its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.coordination_v1 import Lease

from treadle.api import RESET_FAILURES_ANNOTATION as RESET_ANNOTATION
from treadle.api import RUN_NOW_ANNOTATION
from treadle.api.syncjobs import SyncJobSpec
from treadle.controllers import metrics
from treadle.controllers.jobs import Attempt, Job, WriterAwareLocks
from treadle.core import gates, patches, slots, syncs, timestamps
from treadle.runtime import CancelToken, Directive, Notify
from treadle.services import events, kube, runs
from treadle.services.leases import LeaseStore

log = logging.getLogger(__name__)

RETRY_AFTER_ERROR_SECONDS = 10.0
GONE = "Gone"
NEVER = datetime.max.replace(tzinfo=UTC)
"""The `due` of a job with nothing ahead (suspended, Degraded): only news wakes it."""
CONCURRENCY = 32
"""Jobs looked at, or runs started, at once: 500 jobs due in one minute start in seconds, and a
burst never asks more of the API server than a few dozen requests at a time."""


def _wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Scheduler:
    api: AsyncClient
    clock: Callable[[], datetime] = field(default=_wall_clock)
    lease_seconds: int = 60
    lock_poll_seconds: float = 1.0
    concurrency: int = CONCURRENCY
    jobs: dict[str, Job] = field(default_factory=dict)
    wake: Notify = field(default_factory=Notify)
    _timer: asyncio.TimerHandle | None = None
    _talking: asyncio.Semaphore = field(init=False)
    _leases: dict[tuple[str, str], Lease] = field(default_factory=dict)
    """Every job's Leases as last read or written: a run's locks cost a request each to take
    and to release, not two."""

    def __post_init__(self) -> None:
        self._talking = asyncio.Semaphore(self.concurrency)

    # news from kopf handlers (called on the operator's event loop) ---------------------------

    def track(self, body: dict[str, Any], spec: SyncJobSpec, status: dict[str, Any]) -> None:
        meta = body["metadata"]
        uid, generation = meta["uid"], meta.get("generation")
        job = self.jobs.get(uid)
        if job is None:
            created = timestamps.parse(meta["creationTimestamp"])
            self.jobs[uid] = Job(
                uid, meta["name"], meta["namespace"], spec, dict(status), created, generation
            )
        else:
            if job.generation != generation:
                job.spec_changed = True
            job.spec, job.generation, job.due = spec, generation, None
        self.wake.notify()

    def forget(self, uid: str) -> None:
        job = self.jobs.pop(uid, None)
        if job is not None and job.busy is not None:
            job.busy.cancel()

    def run_changed(self, job_uid: str, run: str, phase: str | None) -> None:
        """A run pod changed (phase None: it is gone)."""
        job = self.jobs.get(job_uid)
        if job is not None and job.status.get("activeRun") == run:
            job.run_phase = phase or GONE
            job.due = None
            self.wake.notify()

    def request(self, job_uid: str, annotation: str, value: str, resource_version: str) -> None:
        job = self.jobs.get(job_uid)
        if job is None or annotation in job.requests:
            return
        if not job.annotation_requests.is_new(resource_version):
            return
        job.requests[annotation] = value
        job.due = None
        self.wake.notify()

    # the loop's action ------------------------------------------------------------------------

    async def execute(self, cancel: CancelToken) -> Directive:
        now = self.clock()
        for job in list(self.jobs.values()):
            if job.busy is not None:
                if not job.busy.done():
                    continue
                job.busy = None
            if job.due is None or job.due <= now:
                job.busy = asyncio.create_task(self._look(job), name=f"syncjob:{job.name}")
                job.busy.add_done_callback(lambda _: self.wake.notify())
        self._arm()
        return Directive.idle()

    async def settle(self) -> None:
        """Waits until no job is being looked at (tests use it to see one execution's effect)."""
        while busy := [job.busy for job in self.jobs.values() if job.busy and not job.busy.done()]:
            await asyncio.wait(busy)

    async def _look(self, job: Job) -> None:
        try:
            async with self._talking:
                attempt = await self._step(job, self.clock())
                if attempt is not None:
                    await self._attempt(job, attempt.slot, manual=attempt.manual)
        except Exception:
            log.exception("sync job %s/%s: step failed", job.namespace, job.name)
            job.due = self.clock() + timedelta(seconds=RETRY_AFTER_ERROR_SECONDS)

    def _arm(self) -> None:
        """One timer, at the earliest moment any job needs looking at."""
        if self._timer is not None:
            self._timer.cancel()
        moments = [
            j.due for j in self.jobs.values() if j.due not in (None, NEVER) and j.busy is None
        ]
        if not moments:
            return
        delay = max(0.0, (min(moments) - self.clock()).total_seconds())
        self._timer = asyncio.get_running_loop().call_later(delay, self.wake.notify)

    async def _step(self, job: Job, now: datetime) -> Attempt | None:
        """Carries out what the job needs now; returns the attempt to make, if one is due."""
        if job.spec_changed or RESET_ANNOTATION in job.requests:
            await self._reset(job, now)
        if job.status.get("activeRun"):
            await self._watch_run(job, now)
            return None
        if RUN_NOW_ANNOTATION in job.requests:
            return await self._run_now(job, now)
        if job.due is not None and job.due > now:
            return None
        decision = syncs.decide(job.spec, job.status, now=now, created=job.created)
        if decision.abandoned_slot is not None:
            abandoned = timestamps.text(decision.abandoned_slot)
            log.info("%s/%s: %s (%s)", job.namespace, job.name, syncs.ABANDONING_MESSAGE, abandoned)
            await self._tell(
                job, "Normal", "AbandonedRetry", f"{syncs.ABANDONING_MESSAGE} ({abandoned})"
            )
            metrics.SYNC_ABANDONED_RETRIES.inc()
        if decision.run and decision.slot is not None:
            if decision.retry:
                attempt = int(job.status.get("attemptsInSlot") or 0) + 1
                await self._tell(
                    job,
                    "Normal",
                    "RetryingSkipped",
                    f"{syncs.RETRYING_MESSAGE} (attempt {attempt})",
                )
            job.due = None
            return Attempt(decision.slot, manual=False)
        waiting = {
            **job.status,
            "nextScheduleTime": timestamps.text(syncs.schedule_of(job.spec).next_after(now)),
        }
        if decision.abandoned_slot is not None:
            waiting["nextRetryTime"] = None
        await self._write(job, waiting, now, decision.reason)
        job.due = decision.wake_at or NEVER
        return None

    # attempts ---------------------------------------------------------------------------------

    def _store(self, job: Job) -> LeaseStore:
        return LeaseStore(
            self.api, job.namespace, self.lease_seconds, self.clock, known=self._leases
        )

    async def _quiet_sleep(self, seconds: float) -> None:
        """A wait for a lock gives up its place among the jobs talking to the API server."""
        self._talking.release()
        try:
            await asyncio.sleep(seconds)
        finally:
            await self._talking.acquire()

    async def _attempt(self, job: Job, slot: slots.Slot, *, manual: bool) -> None:
        name = runs.run_name(job.name, self.clock() if manual else slot.start, manual=manual)
        store = self._store(job)
        gate = gates.Gate(
            WriterAwareLocks(store, self._writer_of(job)),
            sleep=self._quiet_sleep,
            poll_seconds=self.lock_poll_seconds,
        )
        request = gates.LockRequest(
            holder=name,
            pipeline=job.spec.pipeline or job.name,
            tables=tuple(job.spec.tables),
            ddl=job.spec.ddl,
            wait_seconds=job.spec.lock_wait_seconds,
        )
        try:
            result = await gate.pass_through(request)
            metrics.SYNC_LOCK_WAIT_SECONDS.observe(result.waited_seconds)
            now = self.clock()
            if not result.passed:
                assert result.reason is not None
                await self._skipped(job, slot, result, now)
                return
            held = [store.taken[(lock, name)] for lock in result.held]
            try:
                body = runs.run_pod(
                    job=job.name,
                    namespace=job.namespace,
                    uid=job.uid,
                    spec=job.spec,
                    name=name,
                    slot=slot.start,
                    locks=[(h.lock, h.transitions) for h in held],
                )
                created = await runs.create_run(self.api, body)
            except Exception:
                for lock in held:
                    await store.release(lock.lock, lock.holder)
                raise
            first = job.status.get("currentSlot") != timestamps.text(slot.start)
            job.held, job.run_phase = held, None
            job.renew_at = now + timedelta(seconds=self.lease_seconds / 3)
            await self._write(
                job,
                syncs.started(job.status, slot, now=now, run=name),
                now,
                f"run {name} in progress",
            )
            what = "started" if created else "adopted (it existed already)"
            await self._tell(
                job, "Normal", "Started", f"run {name} {what}; holding {', '.join(result.held)}"
            )
            metrics.SYNC_RUNS_STARTED.inc()
            if first and not manual:
                metrics.SYNC_SCHEDULE_DELAY_SECONDS.observe((now - slot.start).total_seconds())
        except Exception:
            log.exception("sync job %s/%s: attempt failed", job.namespace, job.name)
            job.due = self.clock() + timedelta(seconds=RETRY_AFTER_ERROR_SECONDS)

    async def _skipped(
        self, job: Job, slot: slots.Slot, result: gates.GateResult, now: datetime
    ) -> None:
        assert result.reason is not None
        status = syncs.skipped(
            job.spec, job.status, slot, now=now, reason=result.reason, holder=result.holder
        )
        retry = status.get("nextRetryTime")
        then = f"retrying within the slot at {retry}" if retry else "waiting for the next slot"
        message = f"skipped: {result.blocked_by} is held by {result.holder}; {then}"
        await self._write(job, status, now, message)
        await self._tell(job, "Normal", "Skipped", message)
        metrics.SYNC_SKIPS.labels(reason=result.reason).inc()
        job.due = timestamps.parse_optional(retry) or slot.end

    async def _run_now(self, job: Job, now: datetime) -> Attempt:
        value = job.requests.pop(RUN_NOW_ANNOTATION)
        await self._clear(job, RUN_NOW_ANNOTATION, value)
        schedule = syncs.schedule_of(job.spec)
        slot = schedule.slot_at(now) or slots.Slot(now, schedule.next_after(now))
        await self._tell(job, "Normal", "RunRequested", "run requested by hand")
        job.due = None
        return Attempt(slot, manual=True)

    def _writer_of(self, job: Job) -> Callable[[str, str], str | None]:
        def writer(table: str, holder: str) -> str | None:
            for other in self.jobs.values():
                run = other.status.get("activeRun")
                if (
                    other is not job
                    and other.namespace == job.namespace
                    and run
                    and run != holder
                    and not other.spec.ddl
                    and table in other.spec.tables
                ):
                    return str(run)
            return None

        return writer

    # runs -------------------------------------------------------------------------------------

    async def _watch_run(self, job: Job, now: datetime) -> None:
        run = str(job.status["activeRun"])
        store = self._store(job)
        if job.run_phase is None:
            await self._look_at_run(job, run)
        if not job.held:
            # After a restart: take the run's locks again as the same holder.
            for lock in job.locks():
                taken = await store.take(lock, run)
                if isinstance(taken, str):
                    await self._stop_run(job, run, now, f"lost {lock} to {taken} while it ran")
                    return
                job.held.append(taken)
            job.renew_at = now + timedelta(seconds=self.lease_seconds / 3)
        if await self._finished(job, run, now):
            return
        started = timestamps.parse_optional(job.status.get("lastAttemptTime")) or now
        deadline = None
        if job.spec.active_deadline_seconds is not None:
            deadline = started + timedelta(seconds=job.spec.active_deadline_seconds)
            if now >= deadline:
                await self._stop_run(
                    job,
                    run,
                    now,
                    f"activeDeadlineSeconds ({job.spec.active_deadline_seconds}) exceeded",
                )
                return
        if job.renew_at is not None and now >= job.renew_at:
            for held in job.held:
                if not await store.renew(held):
                    await self._tell(
                        job, "Warning", "LockLost", f"{held.lock} was taken over; stopping {run}"
                    )
                    await self._stop_run(job, run, now, f"lost {held.lock} while it ran")
                    return
            job.renew_at = now + timedelta(seconds=self.lease_seconds / 3)
            # The safety net for a watch event that never came: look at the pod itself.
            await self._look_at_run(job, run)
            if await self._finished(job, run, now):
                return
        job.due = min(filter(None, [job.renew_at, deadline]))

    async def _look_at_run(self, job: Job, run: str) -> None:
        """Reads the run pod's phase, unless a watch event tells it while the read is under
        way: the event is at least as new, the read's answer may be older."""
        job.run_phase = None
        phase = await runs.run_phase(self.api, job.namespace, run) or GONE
        if job.run_phase is None:
            job.run_phase = phase

    async def _finished(self, job: Job, run: str, now: datetime) -> bool:
        """Finishes the run if its pod ended or is gone."""
        if job.run_phase not in ("Succeeded", "Failed", GONE):
            return False
        succeeded = job.run_phase == "Succeeded"
        why = {GONE: "its pod was deleted"}.get(job.run_phase, job.run_phase.lower())
        await self._finish(job, run, now, succeeded=succeeded, why=why)
        return True

    async def _stop_run(self, job: Job, run: str, now: datetime, why: str) -> None:
        await runs.delete_run(self.api, job.namespace, run)
        await self._finish(job, run, now, succeeded=False, why=why)

    async def _finish(
        self, job: Job, run: str, now: datetime, *, succeeded: bool, why: str
    ) -> None:
        store = self._store(job)
        for held in job.held:
            await store.release(held.lock, held.holder)
        job.held, job.run_phase, job.renew_at = [], None, None
        status = syncs.finished(job.spec, job.status, now=now, succeeded=succeeded)
        outcome = "Succeeded" if succeeded else "Failed"
        message = f"run {run} {why}" if not succeeded else f"run {run} succeeded"
        await self._write(job, status, now, message)
        await self._tell(job, "Normal" if succeeded else "Warning", outcome, message)
        metrics.SYNC_RUNS.labels(outcome=outcome).inc()
        if syncs.is_degraded(job.spec, status):
            await self._tell(job, "Warning", "Degraded", syncs.degraded_message(job.spec, status))
        await runs.prune_runs(
            self.api,
            job.namespace,
            job.name,
            keep_succeeded=job.spec.successful_runs_history_limit,
            keep_failed=job.spec.failed_runs_history_limit,
        )
        job.due = None

    async def _reset(self, job: Job, now: datetime) -> None:
        """A new spec, or the reset annotation: a Degraded job schedules again."""
        value = job.requests.pop(RESET_ANNOTATION, None)
        why = "spec changed" if job.spec_changed else f"{RESET_ANNOTATION}={value}"
        job.spec_changed = False
        if int(job.status.get("consecutiveFailures") or 0):
            await self._write(job, syncs.reset_failures(job.status), now, "failures reset")
            await self._tell(job, "Normal", "FailuresReset", f"consecutive failures reset ({why})")
        if value is not None:
            await self._clear(job, RESET_ANNOTATION, value)

    # writes -----------------------------------------------------------------------------------

    async def _write(self, job: Job, status: dict[str, Any], now: datetime, message: str) -> None:
        status = syncs.with_conditions(
            job.spec, status, now=now, generation=job.generation, message=message
        )
        change = patches.merge_patch(job.status, status)
        if change and not await kube.patch_status(
            self.api, kube.SyncJob, job.namespace, job.name, change
        ):
            self.forget(job.uid)
            return
        job.status = status

    async def _tell(self, job: Job, type: str, reason: str, message: str) -> None:
        await events.post(self.api, job.reference, type, reason, message)

    async def _clear(self, job: Job, annotation: str, value: str) -> None:
        version = await kube.clear_annotation(
            self.api, job.namespace, job.name, annotation, value, resource=kube.SyncJob
        )
        job.annotation_requests.cleared(version)
