"""The SyncJob scheduler: one loop of the worker runtime drives every SyncJob.

Each execution decides, for every job whose time came (its slot, its retry, its run's lock
renewal or deadline), what the pure decision (`treadle.core.syncs`) says, carries it out, and
writes status; then it arms a timer for the earliest next moment and idles.  kopf timers are
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

from lightkube import ApiError, AsyncClient
from lightkube.resources.coordination_v1 import Lease

from treadle.api import BACKFILL_ANNOTATION, RUN_NOW_ANNOTATION, SYNCJOB_REQUESTS
from treadle.api import RESET_FAILURES_ANNOTATION as RESET_ANNOTATION
from treadle.api.syncjobs import ActiveRun, ManualRunOutcome, SyncJobSpec, SyncJobStatus
from treadle.controllers import metrics
from treadle.controllers.jobs import Attempt, Job, WriterAwareLocks
from treadle.core import (
    admission,
    backfills,
    gates,
    patches,
    runbodies,
    slots,
    syncrules,
    syncs,
    templating,
    timestamps,
)
from treadle.runtime import CancelToken, Directive, Notify
from treadle.services import events, kube, syncjob_runs
from treadle.services.leases import LeaseStore

log = logging.getLogger(__name__)

RETRY_AFTER_ERROR_SECONDS = 10.0
GONE = "Gone"
NEVER = datetime.max.replace(tzinfo=UTC)
"""The `due` of a job with nothing ahead (suspended, Degraded): only news wakes it."""
CONCURRENCY = 32
"""Jobs looked at, or runs started, at once: 500 jobs due in one minute start in seconds, and a
burst never asks more of the API server than a few dozen requests at a time."""


class Unrunnable(Exception):
    """A run that may not be made (it fails, as a run that failed at once would)."""


def _told_by_hand(
    attempt: Attempt,
    status: SyncJobStatus,
    outcome: ManualRunOutcome,
    message: str,
    run: str | None = None,
) -> SyncJobStatus:
    """The status, telling whoever asked for this attempt by hand what came of it."""
    if attempt.requested is None:
        return status
    return syncs.manual_run(
        status, requested=attempt.requested, outcome=outcome, message=message, run=run
    )


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

    def track(self, body: dict[str, Any], spec: SyncJobSpec, status: SyncJobStatus) -> None:
        meta = body["metadata"]
        uid, generation = meta["uid"], meta.get("generation")
        job = self.jobs.get(uid)
        if job is None:
            created = timestamps.parse(meta["creationTimestamp"])
            self.jobs[uid] = Job(
                uid, meta["name"], meta["namespace"], spec, status, created, generation
            )
            self.jobs[uid].written = syncs.wire(status)
        else:
            if job.generation != generation:
                job.spec_changed = True
            job.spec, job.generation = spec, generation
            job.look_again()
            if status.template_secrets is not None:  # recorded by the handler (kopf's patch)
                recorded = {"template_secrets": status.template_secrets}
                job.status = job.status.model_copy(update=recorded)
                job.written = syncs.wire(job.status)
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
            async with self._talking:
                again: list[datetime] = []
                blocked: list[Attempt] = []
                for attempt in await self._step(job, self.clock()):
                    if attempt.backfill and any(a.backfill for a in blocked):
                        continue  # a backfill's slots start in order
                    when = await self._attempt(job, attempt)
                    if RUN_NOW_ANNOTATION in job.requests.taken:
                        await self._answered(job, RUN_NOW_ANNOTATION)
                    if when is not None:
                        again.append(when)
                        blocked.append(attempt)
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

    async def _step(self, job: Job, now: datetime) -> list[Attempt]:
        """Carries out what the job needs now; returns the attempts to make, in order."""
        await self._remove_answered(job)
        if job.spec_changed or job.requests.wanted(RESET_ANNOTATION):
            await self._reset(job, now)
        if job.requests.wanted(BACKFILL_ANNOTATION):
            await self._backfill_request(job, now)
        wakes = await self._watch_runs(job, now)
        attempts = await self._scheduled(job, now, wakes)
        attempts += await self._backfill_step(job, now, wakes)
        job.due = None if attempts else min(wakes, default=NEVER)
        return attempts

    async def _scheduled(self, job: Job, now: datetime, wakes: list[datetime]) -> list[Attempt]:
        """What the schedule asks for now (a run by hand included)."""
        running = syncs.scheduled_runs(job.status)
        if job.requests.wanted(RUN_NOW_ANNOTATION):
            if running and job.spec.concurrency_policy != "Allow":
                await self._run_now_waits(job, now, running)
                return []  # once the run under way ended (its end wakes the job)
            return [await self._run_now(job, now)]
        decision = syncs.decide(
            job.spec, job.status, now=now, created=job.created, lock_released=job.lock_released
        )
        job.lock_released = False
        if decision.abandoned_slot is not None:
            abandoned = timestamps.text(decision.abandoned_slot)
            log.info("%s/%s: %s (%s)", job.namespace, job.name, syncs.ABANDONING_MESSAGE, abandoned)
            await self._tell(
                job, "Normal", "AbandonedRetry", f"{syncs.ABANDONING_MESSAGE} ({abandoned})"
            )
            metrics.SYNC_ABANDONED_RETRIES.inc()
        if decision.run and decision.slot is not None and decision.replace:
            await self._replace(job, decision.replace, decision.slot, now)
            return []
        if decision.run and decision.slot is not None:
            if decision.retry:
                attempt = (job.status.attempts_in_slot or 0) + 1
                await self._tell(
                    job,
                    "Normal",
                    "RetryingSkipped",
                    f"{syncs.RETRYING_MESSAGE} (attempt {attempt})",
                )
            if decision.catch_up_since is not None:
                await self._tell(job, "Normal", "CatchingUp", decision.reason)
            return [Attempt(decision.slot, catch_up_since=decision.catch_up_since)]
        if not running:
            upcoming = syncs.schedule_of(job.spec).next_after(now)
            waiting = job.status.model_copy(
                update={"next_schedule_time": timestamps.text(upcoming)}
            )
            if decision.abandoned_slot is not None:
                waiting = waiting.model_copy(update={"next_retry_time": None})
            await self._write(job, waiting, now, decision.reason)
        if decision.wake_at is not None:
            wakes.append(decision.wake_at)
        elif running and job.spec.concurrency_policy != "Forbid":
            wakes.append(syncs.schedule_of(job.spec).next_after(now))
        return []

    async def _replace(
        self, job: Job, names: tuple[str, ...], slot: slots.Slot, now: datetime
    ) -> None:
        """concurrencyPolicy Replace: the runs under way stop; the new slot's run starts once
        they have ended (their end wakes the job)."""
        for name in names:
            run = syncs.run_of(job.status, name)
            if run is None or name in job.stopping:
                continue
            why = f"replaced by the run of the slot of {timestamps.text(slot.start)}"
            await self._tell(job, "Normal", "Replacing", f"run {name} is being {why}")
            await self._stop_run(job, run, now, why)

    # backfills --------------------------------------------------------------------------------

    async def _backfill_request(self, job: Job, now: datetime) -> None:
        """Begins or cancels a backfill; what came of it is in status (or an Event saying why
        not) before the annotation goes, so whoever asked reads the answer once it has."""
        value = job.requests.take(BACKFILL_ANNOTATION)
        assert value is not None
        refusal = await self._take_backfill_request(job, value, now)
        if refusal is not None:
            await self._tell(job, "Warning", "BackfillRefused", f"backfill refused: {refusal}")
        await self._answered(job, BACKFILL_ANNOTATION)

    async def _take_backfill_request(self, job: Job, value: str, now: datetime) -> str | None:
        if value.strip() == backfills.CANCEL:
            cancelled = backfills.cancel(job.status, now=now)
            if cancelled is None:
                return "no backfill is running"
            await self._write(job, cancelled, now, "backfill cancelled")
            await self._tell(job, "Normal", "BackfillCancelled", "backfill cancelled")
            return None
        request = backfills.parse_request(value, now=now)
        if isinstance(request, str):
            return request
        begun = backfills.begin(job.spec, job.status, request, now=now)
        if isinstance(begun, str):
            return begun
        await self._write(job, begun, now, "backfill begun")
        backfill = begun.backfill
        assert backfill is not None
        await self._tell(
            job,
            "Normal",
            "BackfillStarted",
            f"backfill {backfill.id} of {backfill.range}: {backfill.slots} slots, "
            f"{backfill.parallel} at a time",
        )
        return None

    async def _backfill_step(self, job: Job, now: datetime, wakes: list[datetime]) -> list[Attempt]:
        if backfills.running(job.status) is None:
            return []
        if job.backfill_due is not None and now < job.backfill_due:
            wakes.append(job.backfill_due)
            return []
        job.backfill_due = None
        stepped = backfills.step(job.spec, job.status, now=now)
        backfill = stepped.status.backfill
        assert backfill is not None
        if stepped.status != job.status:
            told = f"backfill {backfill.id} {backfill.phase.lower()}: {backfill.message}"
            await self._write(job, stepped.status, now, told)
            if backfill.phase == "Complete":
                await self._tell(
                    job, "Normal", "BackfillComplete", f"backfill {backfill.id}: {backfill.message}"
                )
        return [Attempt(slot, backfill=backfill.id) for slot in stepped.due]

    # attempts ---------------------------------------------------------------------------------

    def _store(self, job: Job) -> LeaseStore:
        async def lives(holder: str) -> bool:
            return await syncjob_runs.holder_lives(self.api, job.namespace, holder)

        return LeaseStore(
            self.api,
            job.namespace,
            self.lease_seconds,
            self.clock,
            known=self._leases,
            holder_lives=lives,
        )

    async def _quiet_sleep(self, seconds: float) -> None:
        """A wait for a lock gives up its place among the jobs talking to the API server."""
        self._talking.release()
        try:
            await asyncio.sleep(seconds)
        finally:
            await self._talking.acquire()

    async def _attempt(self, job: Job, attempt: Attempt) -> datetime | None:
        """Takes the locks and starts the run: None when it started, else when to try again
        (a skip's retry, or a moment after an error)."""
        slot, manual = attempt.slot, attempt.manual
        moment = self.clock() if manual else slot.start
        name = runbodies.run_name(job.name, moment, manual=manual, backfill=attempt.backfill)
        holder = syncrules.holder(job.name, job.spec, name, attempt.backfill)
        store = self._store(job)
        try:
            shared = job.held.get(holder)
            if shared:
                held, passed = shared, tuple(h.lock for h in shared)
                waited = 0.0
            else:
                result = await self._pass_gate(job, store, holder)
                waited = result.waited_seconds
                if not result.passed:
                    return await self._skipped(job, attempt, result, self.clock())
                held = [store.taken[(lock, holder)] for lock in result.held]
                passed = result.held
            metrics.SYNC_LOCK_WAIT_SECONDS.observe(waited)
            now = self.clock()
            kind = runbodies.WORKFLOW if job.spec.workflow is not None else runbodies.POD
            try:
                await self._template_unchanged(job)
                body = runbodies.run_body(
                    runbodies.NewRun(
                        job=job.name,
                        namespace=job.namespace,
                        uid=job.uid,
                        spec=job.spec,
                        name=name,
                        slot=slot.start,
                        locks=[(h.lock, h.transitions) for h in held],
                        holder=holder,
                        backfill=attempt.backfill,
                    )
                )
                created = await syncjob_runs.create_run(self.api, body)
            except Exception as error:
                if not shared:
                    for lock in held:
                        await store.release(lock.lock, lock.holder)
                if isinstance(error, (templating.TemplateError, Unrunnable)):
                    await self._unrunnable(job, attempt, name, now, str(error))
                    return now
                if isinstance(error, ApiError) and error.status.code in (400, 403, 422):
                    # Refused (by the webhook, say: its template is gone): no retry mends it.
                    await self._unrunnable(job, attempt, name, now, error.status.message or "")
                    return now
                raise
            first = job.status.current_slot != timestamps.text(slot.start)
            job.held[holder] = held
            job.phases.pop(name, None)
            if job.renew_at is None:
                job.renew_at = now + timedelta(seconds=self.lease_seconds / 3)
            if attempt.backfill:
                status = backfills.started(
                    job.spec, job.status, slot, now=now, run=name, kind=kind, holder=holder
                )
            else:
                status = syncs.started(
                    job.status, slot, now=now, run=name, kind=kind, holder=holder,
                    catch_up_since=attempt.catch_up_since,
                )  # fmt: skip
            status = _told_by_hand(attempt, status, "Started", f"run {name} started", run=name)
            await self._write(job, status, now, f"run {name} in progress")
            what = "started" if created else "adopted (it existed already)"
            await self._tell(
                job, "Normal", "Started", f"run {name} {what}; holding {', '.join(passed)}"
            )
            metrics.SYNC_RUNS_STARTED.inc()
            if first and not manual and not attempt.backfill and attempt.catch_up_since is None:
                metrics.SYNC_SCHEDULE_DELAY_SECONDS.observe((now - slot.start).total_seconds())
            return None
        except Exception:
            log.exception("sync job %s/%s: attempt failed", job.namespace, job.name)
            if attempt.requested is not None:
                job.requests.failed(RUN_NOW_ANNOTATION)  # asked again on the next look
            return self.clock() + timedelta(seconds=RETRY_AFTER_ERROR_SECONDS)

    async def _template_unchanged(self, job: Job) -> None:
        """Raises Unrunnable when the job's WorkflowTemplate now reads a Secret that it did not
        read when the job was applied: the applying user was checked for those only."""
        ref = job.spec.workflow.workflow_template_ref if job.spec.workflow else None
        if ref is None:
            return
        template = await kube.template_spec(self.api, job.namespace, ref.name)
        recorded = job.status.template_secrets
        allowed = recorded.names if recorded is not None else []
        problem = admission.new_template_secrets(template, allowed, ref.name)
        if problem is not None:
            raise Unrunnable(problem)

    async def _pass_gate(self, job: Job, store: LeaseStore, holder: str) -> gates.GateResult:
        gate = gates.Gate(
            WriterAwareLocks(store, self._writer_of(job)),
            sleep=self._quiet_sleep,
            poll_seconds=self.lock_poll_seconds,
        )
        request = gates.LockRequest(
            holder=holder,
            pipeline=job.spec.pipeline or job.name,
            tables=tuple(job.spec.tables),
            ddl=job.spec.ddl,
            wait_seconds=job.spec.lock_wait_seconds,
        )
        return await gate.pass_through(request)

    async def _unrunnable(
        self, job: Job, attempt: Attempt, name: str, now: datetime, why: str
    ) -> None:
        """A run that cannot be made (a param that does not render for this slot): it fails,
        as a run that failed at once would."""
        message = f"run {name} could not be made: {why}"
        await self._tell(job, "Warning", "Failed", message)
        if attempt.backfill:
            status = backfills.started(
                job.spec, job.status, attempt.slot, now=now, run=name, kind=runbodies.WORKFLOW,
                holder=name,
            )  # fmt: skip
        else:
            status = syncs.started(job.status, attempt.slot, now=now, run=name)
        status = syncs.finished(job.spec, status, now=now, succeeded=False, run=name)
        status = _told_by_hand(attempt, status, "Failed", message, run=name)
        await self._write(job, status, now, message)

    async def _skipped(
        self, job: Job, attempt: Attempt, result: gates.GateResult, now: datetime
    ) -> datetime:
        """Records the skip; returns when to try again."""
        assert result.reason is not None
        held = f"{result.blocked_by} is held by {result.holder}"
        if attempt.backfill:
            wait = syncs.retry_wait_seconds(job.spec, attempt.slot)
            job.backfill_due = now + timedelta(seconds=wait)
            message = (
                f"{backfills.WAITING}: {held}; trying again at "
                f"{timestamps.text(job.backfill_due)} or once it is released"
            )
            await self._write(job, backfills.waiting(job.status, message), now, "backfill waiting")
            await self._tell(job, "Normal", "BackfillWaiting", message)
            return job.backfill_due
        slot = attempt.slot
        status = syncs.skipped(
            job.spec, job.status, slot, now=now, reason=result.reason, holder=result.holder,
            catch_up_since=attempt.catch_up_since,
        )  # fmt: skip
        retry = status.next_retry_time
        then = f"retrying within the slot at {retry}" if retry else "waiting for the next slot"
        message = f"skipped: {held}; {then}"
        status = _told_by_hand(attempt, status, "Skipped", message)
        await self._write(job, status, now, message)
        await self._tell(job, "Normal", "Skipped", message)
        metrics.SYNC_SKIPS.labels(reason=result.reason).inc()
        return timestamps.parse_optional(retry) or slot.end

    async def _run_now(self, job: Job, now: datetime) -> Attempt:
        """A run by hand: its request is answered once the attempt came to something (started,
        skipped on a lock, or could not be made), which `status.manualRun` tells."""
        value = job.requests.take(RUN_NOW_ANNOTATION)
        assert value is not None
        schedule = syncs.schedule_of(job.spec)
        slot = schedule.slot_at(now) or slots.Slot(now, schedule.next_after(now))
        await self._tell(job, "Normal", "RunRequested", "run requested by hand")
        return Attempt(slot, manual=True, requested=value)

    async def _run_now_waits(self, job: Job, now: datetime, running: list[ActiveRun]) -> None:
        """A run by hand waits for the run under way (concurrencyPolicy Forbid or Replace):
        status says so, and the request stays set until it starts."""
        value = job.requests.pending[RUN_NOW_ANNOTATION]
        message = (
            f"waits for run {', '.join(r.name for r in running)} to end "
            f"(concurrencyPolicy {job.spec.concurrency_policy})"
        )
        told = syncs.manual_run(job.status, requested=value, outcome="Waiting", message=message)
        if told != job.status:
            await self._write(job, told, now, f"run by hand {message}")

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

    def _writer_of(self, job: Job) -> Callable[[str, str], str | None]:
        """Which run of another job of its namespace writes a table now (syncrules), asked
        afresh each time: a lock wait asks again as other jobs' runs start and end."""

        def writer(table: str, holder: str) -> str | None:
            others = [
                (other.spec, other.status)
                for other in self.jobs.values()
                if other is not job and other.namespace == job.namespace
            ]
            return syncrules.table_writer(table, holder, others)

        return writer

    # runs -------------------------------------------------------------------------------------

    async def _watch_runs(self, job: Job, now: datetime) -> list[datetime]:
        """Follows the runs under way: takes their locks again after a restart, renews them,
        stops a run past its deadline, finishes each run that ended; returns when to look
        again."""
        under_way = syncs.active_runs(job.status)
        if not under_way:
            job.renew_at = None
            return []
        store = self._store(job)
        for holder in dict.fromkeys(r.holder for r in under_way):
            if holder not in job.held and not await self._adopt(job, store, holder, now):
                continue
        if job.renew_at is None:
            job.renew_at = now + timedelta(seconds=self.lease_seconds / 3)
        wakes: list[datetime] = []
        if now >= job.renew_at:
            for holder, held in list(job.held.items()):
                for lock in held:
                    if not await store.renew(lock):
                        await self._lost(job, holder, lock.lock, now, "was taken over")
                        break
            job.renew_at = now + timedelta(seconds=self.lease_seconds / 3)
            # The safety net for a watch event that never came: look at each run itself.
            job.phases.clear()
        for run in syncs.active_runs(job.status):
            name = run.name
            if name not in job.phases:
                await self._look_at_run(job, run)
            if await self._finished(job, run, now):
                continue
            deadline = syncrules.deadline(job.spec, job.status, run)
            if deadline is not None and name not in job.stopping:
                if now >= deadline:
                    why = f"activeDeadlineSeconds ({job.spec.active_deadline_seconds}) exceeded"
                    await self._stop_run(job, run, now, why)
                    continue
                wakes.append(deadline)
        if syncs.active_runs(job.status):
            wakes.append(job.renew_at)
        return wakes

    async def _adopt(self, job: Job, store: LeaseStore, holder: str, now: datetime) -> bool:
        """After a restart: takes the locks of `holder`'s runs again, as the same holder."""
        held = []
        for lock in job.locks():
            taken = await store.take(lock, holder)
            if isinstance(taken, str):
                await self._lost(job, holder, lock, now, f"went to {taken}")
                return False
            held.append(taken)
        job.held[holder] = held
        return True

    async def _lost(self, job: Job, holder: str, lock: str, now: datetime, how: str) -> None:
        """A lock of `holder` went to someone else: its runs stop, and fail."""
        job.held.pop(holder, None)
        for run in syncs.active_runs(job.status):
            if run.holder == holder:
                await self._tell(job, "Warning", "LockLost", f"{lock} {how}; stopping {run.name}")
                await self._stop_run(job, run, now, f"lost {lock} while it ran")

    async def _look_at_run(self, job: Job, run: ActiveRun) -> None:
        """Reads the run's phase, unless a watch event tells it while the read is under way:
        the event is at least as new, the read's answer may be older."""
        name = run.name
        job.phases.pop(name, None)
        phase = await syncjob_runs.run_phase(self.api, job.namespace, name, run.kind)
        job.phases.setdefault(name, phase or GONE)

    async def _finished(self, job: Job, run: ActiveRun, now: datetime) -> bool:
        """Finishes the run if it ended or is gone."""
        name = run.name
        phase = job.phases.get(name)
        if phase not in ("Succeeded", "Failed", GONE):
            return False
        what = "pod" if run.kind == runbodies.POD else "Workflow"
        why = job.stopping.get(name) or {GONE: f"its {what} was deleted"}.get(phase, "failed")
        await self._finish(job, run, now, succeeded=phase == "Succeeded", why=why)
        return True

    async def _stop_run(self, job: Job, run: ActiveRun, now: datetime, why: str) -> None:
        """Stops a run: a pod is deleted and the run finishes at once; a Workflow is
        terminated and finishes when it has ended."""
        name, kind = run.name, run.kind
        await syncjob_runs.stop_run(self.api, job.namespace, name, kind)
        job.stopping[name] = why
        if kind != runbodies.WORKFLOW:
            await self._finish(job, run, now, succeeded=False, why=why)

    async def _finish(
        self, job: Job, run: ActiveRun, now: datetime, *, succeeded: bool, why: str
    ) -> None:
        name, holder = run.name, run.holder
        replaced = job.stopping.pop(name, "").startswith("replaced")
        job.phases.pop(name, None)
        if replaced:
            status = syncs.without_run(job.status, name)
        else:
            status = syncs.finished(job.spec, job.status, now=now, succeeded=succeeded, run=name)
        if not any(r.holder == holder for r in syncs.active_runs(status)):
            store = self._store(job)
            released = job.held.pop(holder, [])
            for held in released:
                await store.release(held.lock, held.holder)
            self._wake_waiters(job, {held.lock for held in released})
        outcome = "Replaced" if replaced else "Succeeded" if succeeded else "Failed"
        message = f"run {name} succeeded" if succeeded else f"run {name} {why}"
        await self._write(job, status, now, message)
        await self._tell(job, "Normal" if succeeded or replaced else "Warning", outcome, message)
        metrics.SYNC_RUNS.labels(outcome=outcome).inc()
        if not run.backfill and syncs.is_degraded(job.spec, status):
            await self._tell(job, "Warning", "Degraded", syncs.degraded_message(job.spec, status))
        await syncjob_runs.prune_runs(
            self.api,
            job.namespace,
            job.name,
            keep_succeeded=job.spec.successful_runs_history_limit,
            keep_failed=job.spec.failed_runs_history_limit,
            keep_backfills_from=backfills.kept_from(job.spec, job.status),
            kinds=(run.kind,),
        )
        job.look_again()  # a run's end frees its place: what waited for it is decided anew

    async def _reset(self, job: Job, now: datetime) -> None:
        """A new spec, or the reset annotation: a Degraded job schedules again."""
        value = job.requests.take(RESET_ANNOTATION)
        why = "spec changed" if job.spec_changed else f"{RESET_ANNOTATION}={value}"
        job.spec_changed = False
        if syncs.failures(job.status):
            await self._write(job, syncs.reset_failures(job.status), now, "failures reset")
            await self._tell(job, "Normal", "FailuresReset", f"consecutive failures reset ({why})")
        if value is not None:
            await self._answered(job, RESET_ANNOTATION)

    # writes -----------------------------------------------------------------------------------

    async def _write(self, job: Job, status: SyncJobStatus, now: datetime, message: str) -> None:
        status = syncs.with_conditions(
            job.spec, status, now=now, generation=job.generation, message=message
        )
        wired = syncs.wire(status)
        change = patches.merge_patch(job.written, wired)
        if change and not await kube.patch_status(
            self.api, kube.SyncJob, job.namespace, job.name, change
        ):
            self.forget(job.uid)
            return
        job.status, job.written = status, wired

    async def _tell(self, job: Job, type: str, reason: str, message: str) -> None:
        await events.post(self.api, job.reference, type, reason, message)

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
