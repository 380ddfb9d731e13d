"""The SyncJob scheduler: one loop of the worker runtime drives every SyncJob.

Each execution looks at every job whose time came (its slot, its retry, its run's lock renewal
or deadline): it gathers what happened, asks the pure core for the step (`core/syncsteps`,
over `core/syncs`) and has it carried out (attempts by `syncattempts`, runs under way by
`syncruns`, status and Events by `syncapply` alone); then it arms a timer for the earliest next
moment and idles.  kopf timers are
not used: they do not know cron, and one loop with one timer costs nothing between slots.

Each job is looked at in a task of its own, so one job's API round trips hold up no other job;
at most `concurrency` jobs talk to the API server at once.  An attempt that waits
`lockWaitSeconds` for a lock gives up its place while it waits, so it holds up nothing either.
A run is a pod or a Workflow named after the job and its slot: after a crash, the same attempt
finds the same run (a 409) and adopts it, so a slot never runs twice.  Status is the record of
truth: an operator that restarts mid-run finds `activeRuns`, takes their locks again for the
same holders, and watches the runs to their end.  A lock that lapsed while no operator renewed
it goes to no one else while its holder's run still lives (`syncjob_runs.holder_lives`).

Runs hold their locks alone (one run at a time: concurrencyPolicy Forbid and Replace), or share
them under one holder (Allow's runs, a backfill's runs): shared locks are taken with the first
run and given back with the last.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lightkube import AsyncClient

from treadle.api import BACKFILL_ANNOTATION, RUN_NOW_ANNOTATION, SYNCJOB_REQUESTS
from treadle.api import RESET_FAILURES_ANNOTATION as RESET_ANNOTATION
from treadle.api.syncjobs import SyncJobSpec, SyncJobStatus
from treadle.controllers.jobs import Job
from treadle.controllers.syncapply import SyncApplier
from treadle.controllers.syncattempts import RETRY_AFTER_ERROR_SECONDS, Attempts
from treadle.controllers.syncruns import GONE, Runs
from treadle.core import backfills, syncrules, syncs, syncsteps, timestamps
from treadle.core.syncsteps import Attempt, SyncStep
from treadle.runtime import CancelToken, Directive, Notify
from treadle.services import kube

log = logging.getLogger(__name__)

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
    applier: SyncApplier = field(init=False)
    attempts: Attempts = field(init=False)
    runs: Runs = field(init=False)

    def __post_init__(self) -> None:
        self.applier = SyncApplier(self.api)
        self.attempts = Attempts(
            self.api, self._apply, self.clock, asyncio.Semaphore(self.concurrency), self.jobs,
            self.lease_seconds, self.lock_poll_seconds,
        )  # fmt: skip
        self.runs = Runs(
            self.api, self.attempts, self._apply, self._wake_waiters, self.lease_seconds
        )

    # news from kopf handlers (called on the operator's event loop) ---------------------------

    def track(self, body: dict[str, Any], spec: SyncJobSpec, status: SyncJobStatus) -> None:
        meta = body["metadata"]
        uid, generation = meta["uid"], meta.get("generation")
        job = self.jobs.get(uid)
        if job is None:
            created = timestamps.parse(meta["creationTimestamp"])
            job = Job(uid, meta["name"], meta["namespace"], spec, status, created, generation)
            job.written = syncs.wire(status)
            self.jobs[uid] = job
        else:
            if job.generation != generation:
                job.spec_changed = True
            job.spec, job.generation = spec, generation
            if status.template_secrets is not None:  # recorded by the handler (kopf's patch)
                job.status = job.status.model_copy(
                    update={"template_secrets": status.template_secrets}
                )
                job.written = syncs.wire(job.status)
            job.look_again()
        # A request set before the job was tracked (while the operator was away) is taken too.
        annotations = meta.get("annotations") or {}
        for annotation in SYNCJOB_REQUESTS:
            if annotation in annotations:
                version = str(meta.get("resourceVersion", ""))
                self.request(uid, annotation, str(annotations[annotation]), version)
        self.wake.notify()

    def forget(self, uid: str) -> None:
        job = self.jobs.pop(uid, None)
        if job is not None and job.busy is not None:
            job.busy.cancel()

    def run_changed(self, job_uid: str, run: str, phase: str | None) -> None:
        """A run's pod or Workflow changed (phase None: it is gone)."""
        job = self.jobs.get(job_uid)
        if job is not None and syncs.run_of(job.status, run) is not None:
            job.phases[run] = phase or GONE
            job.look_again()
            self.wake.notify()

    def request(self, job_uid: str, annotation: str, value: str, resource_version: str) -> None:
        """The watch shows a request annotation; a job not tracked yet takes it when it is."""
        job = self.jobs.get(job_uid)
        if job is not None and job.requests.seen(annotation, value, resource_version):
            self.wake.notify()

    # the loop's action ------------------------------------------------------------------------

    async def execute(self, cancel: CancelToken) -> Directive:
        now = self.clock()
        for job in list(self.jobs.values()):
            if job.busy is not None:
                if not job.busy.done():
                    continue
                job.busy = None
            if job.due is None or job.due <= now or job.requests.pending:
                job.busy = asyncio.create_task(self._look(job), name=f"syncjob:{job.name}")
                job.busy.add_done_callback(lambda _: self.wake.notify())
        self._arm()
        return Directive.idle()

    async def settle(self) -> None:
        """Waits until no job is being looked at (tests use it to see one execution's effect)."""
        while busy := [job.busy for job in self.jobs.values() if job.busy and not job.busy.done()]:
            await asyncio.wait(busy)

    async def _look(self, job: Job) -> None:
        news = job.news
        try:
            async with self.attempts.talking:
                again: list[datetime] = []
                blocked = False
                for attempt in await self._step(job, self.clock()):
                    if attempt.backfill and blocked:
                        continue  # a backfill's slots start in order
                    when = await self.attempts.make(job, attempt)
                    if RUN_NOW_ANNOTATION in job.requests.taken:
                        await self._answered(job, RUN_NOW_ANNOTATION)
                    if when is not None:
                        again.append(when)
                        blocked = blocked or bool(attempt.backfill)
                if again:
                    job.due = min(again)
        except Exception:
            log.exception("sync job %s/%s: step failed", job.namespace, job.name)
            for annotation in list(job.requests.taken):
                job.requests.failed(annotation)
            job.due = self.clock() + timedelta(seconds=RETRY_AFTER_ERROR_SECONDS)
        if job.news != news:
            job.due = None  # news came during the look: its `due` was decided without it

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

    async def _apply(self, job: Job, step: SyncStep, now: datetime) -> None:
        if not await self.applier.apply(job, step, now):
            self.forget(job.uid)  # its status could not be written: it is gone

    async def _step(self, job: Job, now: datetime) -> list[Attempt]:
        """Carries out what the job needs now; returns the attempts to make, in order."""
        await self._remove_answered(job)
        if job.spec_changed or job.requests.wanted(RESET_ANNOTATION):
            value = job.requests.take(RESET_ANNOTATION)
            why = "spec changed" if job.spec_changed else f"{RESET_ANNOTATION}={value}"
            job.spec_changed = False
            await self._apply(job, syncsteps.reset(job.status, why), now)
            if value is not None:
                await self._answered(job, RESET_ANNOTATION)
        if job.requests.wanted(BACKFILL_ANNOTATION):
            value = job.requests.take(BACKFILL_ANNOTATION)
            assert value is not None
            step = syncsteps.backfill_requested(job.spec, job.status, value, now=now)
            await self._apply(job, step, now)
            await self._answered(job, BACKFILL_ANNOTATION)
        wakes = await self.runs.watch(job, now)
        attempts = await self._scheduled(job, now, wakes)
        attempts += await self._backfill_step(job, now, wakes)
        job.due = None if attempts else min(wakes, default=NEVER)
        return attempts

    async def _scheduled(self, job: Job, now: datetime, wakes: list[datetime]) -> list[Attempt]:
        """What the schedule asks for now (a run by hand included)."""
        running = syncs.scheduled_runs(job.status)
        if job.requests.wanted(RUN_NOW_ANNOTATION):
            requested = job.requests.pending[RUN_NOW_ANNOTATION]
            if running and job.spec.concurrency_policy != "Allow":
                waits = syncsteps.run_by_hand_waits(job.spec, job.status, requested, running)
                await self._apply(job, waits, now)
                return []  # once the run under way ended (its end wakes the job)
            job.requests.take(RUN_NOW_ANNOTATION)
            attempt, told = syncsteps.run_by_hand(job.spec, now, requested)
            await self._apply(job, SyncStep(effects=(told,)), now)
            return [attempt]
        plan = syncsteps.plan(
            job.spec, job.status, now=now, created=job.created, released=job.lock_released
        )
        job.lock_released = False
        await self._apply(job, plan.step, now)
        for name in plan.replace:  # their end wakes the job, and the new slot's run starts
            run = syncs.run_of(job.status, name)
            if run is not None and name not in job.stopping and plan.slot is not None:
                why, told = syncsteps.replacing(plan.slot, name)
                await self._apply(job, SyncStep(effects=(told,)), now)
                await self.runs.stop(job, run, now, why)
        if plan.wake_at is not None:
            wakes.append(plan.wake_at)
        return [plan.attempt] if plan.attempt is not None else []

    async def _backfill_step(self, job: Job, now: datetime, wakes: list[datetime]) -> list[Attempt]:
        if backfills.running(job.status) is None:
            return []
        if job.backfill_due is not None and now < job.backfill_due:
            wakes.append(job.backfill_due)
            return []
        job.backfill_due = None
        step, attempts = syncsteps.backfill_progress(job.spec, job.status, now=now)
        await self._apply(job, step, now)
        return attempts

    def _wake_waiters(self, job: Job, released: set[str]) -> None:
        """Locks of `job` were given back: the jobs of its namespace that wait for one of them
        (a run skipped on it, a backfill waiting for it) try again now, not at their retry
        time."""
        for other in self.jobs.values():
            if other.namespace == job.namespace and syncrules.waits_for(
                other.status, other.locks(), backfill_waits=other.backfill_due is not None,
                released=released,
            ):  # fmt: skip
                other.lock_released, other.backfill_due = True, None
                other.look_again()
                self.wake.notify()

    # requests ---------------------------------------------------------------------------------

    async def _answered(self, job: Job, annotation: str) -> None:
        """The request is carried out: its annotation goes (a newer value set meanwhile stays,
        and is taken next)."""
        job.requests.done(annotation)
        await self._remove_answered(job)

    async def _remove_answered(self, job: Job) -> None:
        """Removes the annotations of requests carried out (a removal that failed before is
        tried again, and not carried out twice)."""
        for annotation, value in job.requests.to_remove():
            version = await kube.clear_annotation(
                self.api, job.namespace, job.name, annotation, value, resource=kube.SyncJob
            )
            job.requests.removed(annotation, version)
