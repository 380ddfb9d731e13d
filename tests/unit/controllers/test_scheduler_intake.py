"""What the scheduler takes in from the watch, and whom a released lock wakes, without the
API server: these parts of it talk to nothing (#32: requests lost and replayed; #33: the
scheduler had no unit test)."""

from __future__ import annotations

from typing import Any

from treadle.api import BACKFILL_ANNOTATION, RUN_NOW_ANNOTATION
from treadle.api.syncjobs import ActiveRun, SyncJobSpec, SyncJobStatus
from treadle.controllers.scheduler import Scheduler
from treadle.core import gates

SKIPPED = SyncJobStatus(last_outcome="Skipped")
TEMPLATE = {"spec": {"containers": [{"name": "c", "image": "x"}]}}


def body(name: str, namespace: str = "ns", annotations: dict[str, str] | None = None) -> Any:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "generation": 1,
            "resourceVersion": "100",
            "creationTimestamp": "2026-12-07T00:00:00Z",
            "annotations": annotations or {},
        }
    }


def spec(**given: Any) -> SyncJobSpec:
    return SyncJobSpec.model_validate({"schedule": "0 * * * *", "template": TEMPLATE, **given})


def scheduler() -> Scheduler:
    return Scheduler(api=None)  # type: ignore[arg-type]  # intake never calls it


def test_a_request_set_while_the_operator_was_away_is_taken_when_the_job_is_tracked() -> None:
    intake = scheduler()
    intake.track(body("etl", annotations={RUN_NOW_ANNOTATION: "t1"}), spec(), SyncJobStatus())
    assert intake.jobs["uid-ns-etl"].requests.pending == {RUN_NOW_ANNOTATION: "t1"}


def test_the_watch_repeating_a_request_being_carried_out_queues_nothing_a_new_one_does() -> None:
    intake = scheduler()
    intake.track(body("etl"), spec(), SyncJobStatus())
    job = intake.jobs["uid-ns-etl"]
    intake.request(job.uid, BACKFILL_ANNOTATION, '{"from": "a"}', "101")
    assert job.requests.take(BACKFILL_ANNOTATION) == '{"from": "a"}'
    intake.request(job.uid, BACKFILL_ANNOTATION, '{"from": "a"}', "102")  # its own writes
    assert not job.requests.pending
    intake.request(job.uid, BACKFILL_ANNOTATION, '{"from": "b"}', "103")  # a newer request
    assert job.requests.pending == {BACKFILL_ANNOTATION: '{"from": "b"}'}


def test_a_released_lock_wakes_the_jobs_of_its_namespace_that_wait_for_it_and_no_other() -> None:
    intake = scheduler()
    for name, namespace in (("holder", "ns"), ("waiter", "ns"), ("elsewhere", "other")):
        intake.track(body(name, namespace), spec(pipeline="orders"), SKIPPED)
    intake.track(body("unrelated"), spec(pipeline="billing"), SKIPPED)
    for job in intake.jobs.values():
        job.due = None
    released = {gates.pipeline_lock("orders")}
    intake._wake_waiters(intake.jobs["uid-ns-holder"], released)
    woken = sorted(job.name for job in intake.jobs.values() if job.lock_released)
    assert woken == ["holder", "waiter"]


async def test_a_run_that_ends_while_its_job_is_being_looked_at_gets_the_job_looked_at_again(
    monkeypatch: Any,
) -> None:
    """CI on main 8b49321: a 24-slot backfill stalled at 10 of 24. A run's end came from the
    watch during a look at its job; the look then set `due` from what it had seen, and the job
    slept until its next lease renewal, once per lost end."""
    import asyncio

    intake = scheduler()
    run = ActiveRun(name="etl-b1-1", holder="etl-b1-1", slot="x", backfill=True)
    intake.track(body("etl"), spec(), SyncJobStatus(active_runs=[run]))
    job = intake.jobs["uid-ns-etl"]
    looking, finish = asyncio.Event(), asyncio.Event()

    async def step(job: Any, now: Any) -> list[Any]:
        looking.set()
        await finish.wait()
        job.due = job.created.replace(year=2100)  # decided before the run's end was seen
        return []

    monkeypatch.setattr(intake, "_step", step)
    look = asyncio.create_task(intake._look(job))
    await looking.wait()
    intake.run_changed(job.uid, "etl-b1-1", "Succeeded")
    finish.set()
    await look
    assert job.due is None, "the run's end must be looked at, not slept through"
    assert job.phases == {"etl-b1-1": "Succeeded"}
