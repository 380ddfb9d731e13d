"""Rules about a SyncJob's runs that the scheduler asks while it carries a slot out: who a
run's locks are held for, when a run is past its deadline, and which run of another job writes
a table now (a schema change waits for it).  Pure: decided here, carried out by
controllers/scheduler.py."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from treadle.api.syncjobs import ActiveRun, SyncJobSpec, SyncJobStatus
from treadle.core import runbodies, syncs, timestamps


def holder(job: str, spec: SyncJobSpec, run: str, backfill: int = 0) -> str:
    """Who the run's locks are held for: the run alone (Forbid, Replace), the job's runs
    together (Allow: `<job>-runs`), or the backfill's runs together (`<job>-backfill-<n>`)."""
    if backfill:
        return runbodies.holder_name(job, f"backfill-{backfill}")
    if spec.concurrency_policy == "Allow":
        return runbodies.holder_name(job, "runs")
    return run


def deadline(spec: SyncJobSpec, status: SyncJobStatus, run: ActiveRun) -> datetime | None:
    """When the run is past `activeDeadlineSeconds` (None: no deadline, or no start known)."""
    if spec.active_deadline_seconds is None:
        return None
    started = timestamps.parse_optional(run.started or status.last_attempt_time)
    if started is None:
        return None
    return started + timedelta(seconds=spec.active_deadline_seconds)


def table_writer(
    table: str,
    holder: str,
    others: Iterable[tuple[SyncJobSpec, SyncJobStatus]],
) -> str | None:
    """The run under way of another job (`others`: the namespace's other jobs, spec and
    status) that writes `table` and holds its locks for someone else than `holder`: a DDL job
    must not change the table's schema under it."""
    for spec, status in others:
        if spec.ddl or table not in spec.tables:
            continue
        for run in syncs.active_runs(status):
            if run.holder != holder:
                return run.name
    return None


def waits_for(
    status: SyncJobStatus,
    locks: Iterable[str],
    *,
    backfill_waits: bool,
    released: set[str],
) -> bool:
    """Whether a job of the same namespace waits for one of the `released` locks: its last
    run was skipped, or its backfill waits, and it takes one of them.  It then tries again at
    once, not at its retry time."""
    waiting = status.last_outcome == syncs.SKIPPED or backfill_waits
    return waiting and bool(released & set(locks))
