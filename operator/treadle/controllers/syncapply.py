"""Carries out what the SyncJob core decided (`core/syncsteps.SyncStep`): the only writer of a
SyncJob's status, and the only place the scheduler's Events, metrics and prunings happen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lightkube import AsyncClient
from prometheus_client import Counter, Histogram

from treadle.api.syncjobs import SyncJobStatus
from treadle.controllers import metrics
from treadle.controllers.jobs import Job
from treadle.core import patches, syncs, syncsteps
from treadle.core.syncsteps import Count, Prune, SyncStep, Tell
from treadle.services import events, kube, statuses, syncjob_runs

METRICS: dict[str, Counter | Histogram] = {
    syncsteps.RUNS: metrics.SYNC_RUNS,
    syncsteps.RUNS_STARTED: metrics.SYNC_RUNS_STARTED,
    syncsteps.SKIPS: metrics.SYNC_SKIPS,
    syncsteps.ABANDONED_RETRIES: metrics.SYNC_ABANDONED_RETRIES,
    syncsteps.LOCK_WAIT: metrics.SYNC_LOCK_WAIT_SECONDS,
    syncsteps.SCHEDULE_DELAY: metrics.SYNC_SCHEDULE_DELAY_SECONDS,
}


@dataclass
class SyncApplier:
    api: AsyncClient

    async def apply(self, job: Job, step: SyncStep, now: datetime) -> bool:
        """Writes the step's status (with its conditions), then carries its effects out in
        order; False when the job is gone (its status could not be written)."""
        if step.status is not None and not await self.write(job, step.status, now, step.message):
            return False
        for effect in step.effects:
            if isinstance(effect, Tell):
                await events.post(
                    self.api, job.reference, effect.type, effect.reason, effect.message
                )
            elif isinstance(effect, Count):
                count(effect)
            elif isinstance(effect, Prune):
                await syncjob_runs.prune_runs(
                    self.api,
                    job.namespace,
                    job.name,
                    keep_succeeded=job.spec.successful_runs_history_limit,
                    keep_failed=job.spec.failed_runs_history_limit,
                    keep_backfills_from=effect.keep_backfills_from,
                    kinds=(effect.kind,),
                )
        return True

    async def write(self, job: Job, status: SyncJobStatus, now: datetime, message: str) -> bool:
        """A merge patch from the status as last written; False when the job is gone."""
        status = syncs.with_conditions(
            job.spec, status, now=now, generation=job.generation, message=message
        )
        wired = syncs.wire(status)
        change = patches.merge_patch(job.written, wired)
        if change and not await statuses.patch_status(
            self.api, kube.SyncJob, job.namespace, job.name, change
        ):
            return False
        job.status, job.written = status, wired
        return True


def count(effect: Count) -> None:
    metric = METRICS[effect.metric]
    child = metric.labels(effect.label) if effect.label is not None else metric
    if isinstance(child, Histogram):
        child.observe(effect.value)
    else:
        child.inc(effect.value)
