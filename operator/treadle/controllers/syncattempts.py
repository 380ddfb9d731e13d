"""An attempt of a SyncJob's slot: take the job's locks (waiting up to `lockWaitSeconds`, giving
up its place among the jobs talking to the API server meanwhile), then make the run.  What came
of it (started, skipped, could not be made) is decided by core/syncsteps and written by the
applier."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lightkube import ApiError, AsyncClient
from lightkube.resources.coordination_v1 import Lease

from treadle.api import RUN_NOW_ANNOTATION
from treadle.controllers.jobs import Job, WriterAwareLocks
from treadle.core import gates, runbodies, syncadmission, syncrules, syncsteps, templating
from treadle.core.syncsteps import Attempt, SyncStep
from treadle.services import kube, syncjob_runs
from treadle.services.leases import Held, LeaseStore

log = logging.getLogger(__name__)

RETRY_AFTER_ERROR_SECONDS = 10.0


class Unrunnable(Exception):
    """A run that may not be made (it fails, as a run that failed at once would)."""


@dataclass
class Attempts:
    api: AsyncClient
    apply: Callable[[Job, SyncStep, datetime], Awaitable[None]]
    """Writes a step's status and carries its effects out (the scheduler's, through the
    applier: a job whose status cannot be written is forgotten)."""
    clock: Callable[[], datetime]
    talking: asyncio.Semaphore
    """Held by the look that makes the attempt; given up while it waits for a lock."""
    jobs: dict[str, Job]
    """Every job tracked (a DDL job's table is taken while another job's run writes it)."""
    lease_seconds: int = 60
    lock_poll_seconds: float = 1.0
    leases: dict[tuple[str, str], Lease] = field(default_factory=dict)
    """Every job's Leases as last read or written: a run's locks cost a request each to take
    and to release, not two."""

    def store(self, job: Job) -> LeaseStore:
        async def lives(holder: str) -> bool:
            return await syncjob_runs.holder_lives(self.api, job.namespace, holder)

        return LeaseStore(
            self.api,
            job.namespace,
            self.lease_seconds,
            self.clock,
            known=self.leases,
            holder_lives=lives,
        )

    async def make(self, job: Job, attempt: Attempt) -> datetime | None:
        """Takes the locks and starts the run: None when it started, else when to try again
        (a skip's retry, or a moment after an error)."""
        moment = self.clock() if attempt.manual else attempt.slot.start
        name = runbodies.run_name(
            job.name, moment, manual=attempt.manual, backfill=attempt.backfill
        )
        holder = syncrules.holder(job.name, job.spec, name, attempt.backfill)
        store = self.store(job)
        try:
            shared = job.held.get(holder)
            waited = 0.0
            if shared:
                held = shared
            else:
                result = await self._pass_gate(job, store, holder)
                waited = result.waited_seconds
                if not result.passed:
                    assert result.reason is not None
                    assert result.blocked_by is not None
                    step, retry = syncsteps.skipped(
                        job.spec, job.status, attempt, reason=result.reason,
                        lock=result.blocked_by, holder=result.holder,
                        waited_seconds=waited, now=self.clock(),
                    )  # fmt: skip
                    if attempt.backfill:
                        job.backfill_due = retry
                    await self.apply(job, step, self.clock())
                    return retry
                held = [store.taken[(lock, holder)] for lock in result.held]
            return await self._run(
                job, attempt, name, holder, held, store, shared=bool(shared), waited=waited
            )
        except Exception:
            log.exception("sync job %s/%s: attempt failed", job.namespace, job.name)
            if attempt.requested is not None:
                job.requests.failed(RUN_NOW_ANNOTATION)  # asked again on the next look
            return self.clock() + timedelta(seconds=RETRY_AFTER_ERROR_SECONDS)

    async def _run(
        self,
        job: Job,
        attempt: Attempt,
        name: str,
        holder: str,
        held: list[Held],
        store: LeaseStore,
        *,
        shared: bool,
        waited: float,
    ) -> datetime | None:
        """The locks are held: makes the run (or adopts the one a crash left)."""
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
                    slot=attempt.slot.start,
                    locks=[(h.lock, h.transitions) for h in held],
                    holder=holder,
                    backfill=attempt.backfill,
                )
            )
            created = await syncjob_runs.create_run(self.api, body)
        except Exception as error:
            if not shared:
                await store.release_all(held)
            why = _refusal(error)
            if why is None:
                raise
            step = syncsteps.unrunnable(job.spec, job.status, attempt, run=name, why=why, now=now)
            await self.apply(job, step, now)
            return now
        job.held[holder] = held
        job.phases.pop(name, None)
        if job.renew_at is None:
            job.renew_at = now + timedelta(seconds=self.lease_seconds / 3)
        step = syncsteps.started(
            job.spec, job.status, attempt, run=name, kind=kind, holder=holder,
            locks=tuple(h.lock for h in held), adopted=not created, waited_seconds=waited, now=now,
        )  # fmt: skip
        await self.apply(job, step, now)
        return None

    async def _template_unchanged(self, job: Job) -> None:
        """Raises Unrunnable when the job's WorkflowTemplate now reads a Secret that it did not
        read when the job was applied: the applying user was checked for those only."""
        ref = job.spec.workflow.workflow_template_ref if job.spec.workflow else None
        if ref is None:
            return
        template = await kube.template_spec(self.api, job.namespace, ref.name)
        recorded = job.status.template_secrets
        allowed = recorded.names if recorded is not None else []
        problem = syncadmission.new_template_secrets(template, allowed, ref.name)
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

    async def _quiet_sleep(self, seconds: float) -> None:
        """A wait for a lock gives up its place among the jobs talking to the API server."""
        self.talking.release()
        try:
            await asyncio.sleep(seconds)
        finally:
            await self.talking.acquire()

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


def _refusal(error: Exception) -> str | None:
    """Why a run cannot be made, when no retry mends it (None: try again later)."""
    if isinstance(error, (templating.TemplateError, Unrunnable)):
        return str(error)
    if isinstance(error, ApiError) and error.status.code in (400, 403, 422):
        # Refused (by the webhook, say: its template is gone).
        return error.status.message or ""
    return None
