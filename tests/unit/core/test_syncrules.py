"""Who holds a run's locks, when a run is past its deadline, and which run writes a table:
decided in the core (they were methods of the scheduler, tested only end to end)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from treadle.api.syncjobs import ActiveRun, SyncJobSpec, SyncJobStatus
from treadle.core import syncrules

TEMPLATE = {"spec": {"containers": [{"name": "c", "image": "x"}]}}


def spec(**given: Any) -> SyncJobSpec:
    return SyncJobSpec.model_validate({"schedule": "0 * * * *", "template": TEMPLATE, **given})


def test_a_run_holds_its_locks_alone_unless_its_job_allows_overlap_or_it_backfills() -> None:
    assert syncrules.holder("etl", spec(), "etl-20261207100000") == "etl-20261207100000"
    allowed = spec(concurrencyPolicy="Allow")
    assert syncrules.holder("etl", allowed, "etl-20261207100000") == "etl-runs"
    assert syncrules.holder("etl", allowed, "etl-20261207100000-b3", backfill=3) == (
        "etl-backfill-3"
    )


def test_a_runs_deadline_counts_from_its_start_or_else_the_last_attempt() -> None:
    job = spec(activeDeadlineSeconds=60)
    run = ActiveRun(name="r", slot="x", holder="r", started="2026-12-07T10:00:00Z")
    unstarted = ActiveRun(name="r", slot="x", holder="r")
    none = SyncJobStatus()
    assert syncrules.deadline(job, none, run) == datetime(2026, 12, 7, 10, 1, tzinfo=UTC)
    status = SyncJobStatus(last_attempt_time="2026-12-07T11:00:00Z")
    assert syncrules.deadline(job, status, unstarted) == datetime(2026, 12, 7, 11, 1, tzinfo=UTC)
    assert syncrules.deadline(job, none, unstarted) is None
    assert syncrules.deadline(spec(), status, run) is None


def test_a_table_is_written_by_another_jobs_run_holding_its_locks_for_someone_else() -> None:
    writer = spec(tables=["warehouse.orders"])
    ddl = spec(tables=["warehouse.orders"], ddl=True)
    running = SyncJobStatus(active_runs=[ActiveRun(name="load-1", holder="load-1", slot="x")])
    assert syncrules.table_writer("warehouse.orders", "migrate-1", [(writer, running)]) == (
        "load-1"
    )
    assert syncrules.table_writer("warehouse.orders", "load-1", [(writer, running)]) is None
    assert syncrules.table_writer("warehouse.other", "migrate-1", [(writer, running)]) is None
    assert syncrules.table_writer("warehouse.orders", "migrate-1", [(ddl, running)]) is None
    assert (
        syncrules.table_writer("warehouse.orders", "migrate-1", [(writer, SyncJobStatus())]) is None
    )


def test_a_released_lock_is_waited_for_by_a_skipped_run_or_a_waiting_backfill_that_takes_it() -> (
    None
):
    released = {"treadle-pipeline-orders"}
    skipped = SyncJobStatus(last_outcome="Skipped")
    mine = ["treadle-pipeline-orders"]
    assert syncrules.waits_for(skipped, mine, backfill_waits=False, released=released)
    assert syncrules.waits_for(SyncJobStatus(), mine, backfill_waits=True, released=released)
    assert not syncrules.waits_for(SyncJobStatus(), mine, backfill_waits=False, released=released)
    other = ["treadle-pipeline-billing"]
    assert not syncrules.waits_for(skipped, other, backfill_waits=True, released=released)
