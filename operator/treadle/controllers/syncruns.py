"""A SyncJob's runs under way, followed to their end: their locks taken again after a restart
and renewed, a run past its deadline or whose lock was lost stopped, a run that ended finished
(core/syncsteps decides its outcome, the applier writes it) and its locks given back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from lightkube import AsyncClient

from treadle.api.syncjobs import ActiveRun
from treadle.controllers.jobs import Job
from treadle.controllers.syncattempts import Attempts
from treadle.core import runbodies, syncrules, syncs, syncsteps
from treadle.core.syncsteps import SyncStep, Tell
from treadle.services import syncjob_runs

GONE = "Gone"
"""The phase of a run whose pod or Workflow was deleted."""


@dataclass
class Runs:
    api: AsyncClient
    attempts: Attempts
    apply: Callable[[Job, SyncStep, datetime], Awaitable[None]]
    released: Callable[[Job, set[str]], None]
    """Told which locks a job gave back (the jobs waiting for them try again)."""
    lease_seconds: int = 60

    async def watch(self, job: Job, now: datetime) -> list[datetime]:
        """Follows the runs under way; returns when to look again."""
        if not syncs.active_runs(job.status):
            job.renew_at = None
            return []
        store = self.attempts.store(job)
        for holder in dict.fromkeys(r.holder for r in syncs.active_runs(job.status)):
            if holder not in job.held:  # after a restart: the same holder takes them again
                taken = await store.take_all(job.locks(), holder)
                if isinstance(taken, tuple):
                    await self._lost(job, holder, taken[0], now, f"went to {taken[1]}")
                else:
                    job.held[holder] = taken
        if job.renew_at is not None and now >= job.renew_at:
            for holder, held in list(job.held.items()):
                lost = await store.renew_all(held)
                if lost is not None:
                    await self._lost(job, holder, lost, now, "was taken over")
            # The safety net for a watch event that never came: look at each run itself.
            job.phases.clear()
            job.renew_at = None
        if job.renew_at is None:
            job.renew_at = now + timedelta(seconds=self.lease_seconds / 3)
        wakes: list[datetime] = []
        for run in syncs.active_runs(job.status):
            if run.name not in job.phases:
                await self._look_at(job, run)
            if await self._finished(job, run, now):
                continue
            deadline = syncrules.deadline(job.spec, job.status, run)
            if deadline is not None and run.name not in job.stopping:
                if now >= deadline:
                    why = f"activeDeadlineSeconds ({job.spec.active_deadline_seconds}) exceeded"
                    await self.stop(job, run, now, why)
                    continue
                wakes.append(deadline)
        if syncs.active_runs(job.status):
            wakes.append(job.renew_at)
        return wakes

    async def stop(self, job: Job, run: ActiveRun, now: datetime, why: str) -> None:
        """Stops a run: a pod is deleted and the run finishes at once; a Workflow is
        terminated and finishes when it has ended."""
        await syncjob_runs.stop_run(self.api, job.namespace, run.name, run.kind)
        job.stopping[run.name] = why
        if run.kind != runbodies.WORKFLOW:
            await self._finish(job, run, now, False, why)

    async def _look_at(self, job: Job, run: ActiveRun) -> None:
        """Reads the run's phase, unless a watch event tells it while the read is under way:
        the event is at least as new, the read's answer may be older."""
        job.phases.pop(run.name, None)
        phase = await syncjob_runs.run_phase(self.api, job.namespace, run.name, run.kind)
        job.phases.setdefault(run.name, phase or GONE)

    async def _lost(self, job: Job, holder: str, lock: str, now: datetime, how: str) -> None:
        """A lock of `holder` went to someone else: its runs stop, and fail."""
        job.held.pop(holder, None)
        for run in syncs.active_runs(job.status):
            if run.holder == holder:
                told = Tell("Warning", "LockLost", f"{lock} {how}; stopping {run.name}")
                await self.apply(job, SyncStep(effects=(told,)), now)
                await self.stop(job, run, now, f"lost {lock} while it ran")

    async def _finished(self, job: Job, run: ActiveRun, now: datetime) -> bool:
        """Finishes the run if it ended or is gone."""
        phase = job.phases.get(run.name)
        if phase not in ("Succeeded", "Failed", GONE):
            return False
        what = "pod" if run.kind == runbodies.POD else "Workflow"
        gone = {GONE: f"its {what} was deleted"}.get(phase, "failed")
        await self._finish(job, run, now, phase == "Succeeded", job.stopping.get(run.name) or gone)
        return True

    async def _finish(
        self, job: Job, run: ActiveRun, now: datetime, succeeded: bool, why: str
    ) -> None:
        replaced = job.stopping.pop(run.name, "").startswith("replaced")
        job.phases.pop(run.name, None)
        step = syncsteps.finished(
            job.spec, job.status, run, succeeded=succeeded, why=why, replaced=replaced, now=now
        )
        assert step.status is not None
        if syncsteps.holder_done(step.status, run.holder):
            given_back = job.held.pop(run.holder, [])
            await self.attempts.store(job).release_all(given_back)
            self.released(job, {held.lock for held in given_back})
        await self.apply(job, step, now)
        job.look_again()  # a run's end frees its place: what waited for it is decided anew
