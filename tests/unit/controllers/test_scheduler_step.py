"""The SyncJob scheduler through its steps, with its outside parts recorded: the runs it makes,
the statuses it writes, the Events it tells, the locks it takes and gives back (#33: the
scheduler had no unit test; the real API server and Leases are in tests/integration)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from treadle.api import BACKFILL_ANNOTATION, RUN_NOW_ANNOTATION
from treadle.api.syncjobs import SyncJobSpec, SyncJobStatus
from treadle.controllers import syncapply, syncattempts, syncruns
from treadle.controllers.scheduler import Scheduler
from treadle.core import patches
from treadle.runtime import CancelToken
from treadle.services import events, kube, statuses, syncjob_runs
from treadle.services.leases import Held

TEMPLATE = {"spec": {"containers": [{"name": "c", "image": "x"}]}}
START = datetime(2026, 12, 7, 10, 0, 30, tzinfo=UTC)


@dataclass
class Locks:
    """One namespace's locks, as Leases would hold them."""

    holders: dict[str, str] = field(default_factory=dict)
    taken: dict[tuple[str, str], Held] = field(default_factory=dict)

    async def acquire(self, lock: str, holder: str) -> str | None:
        if self.holders.get(lock, holder) != holder:
            return self.holders[lock]
        self.holders[lock] = holder
        self.taken[(lock, holder)] = Held(lock, holder, 0)
        return None

    async def holder(self, lock: str) -> str | None:
        return self.holders.get(lock)

    async def release(self, lock: str, holder: str) -> bool:
        if self.holders.get(lock) == holder:
            del self.holders[lock]
            return True
        return False

    async def release_all(self, held: list[Held]) -> None:
        for lock in held:
            await self.release(lock.lock, lock.holder)

    async def take_all(self, locks: list[str], holder: str) -> list[Held] | tuple[str, str]:
        for lock in locks:
            if (other := await self.acquire(lock, holder)) is not None:
                return lock, other
        return [Held(lock, holder, 0) for lock in locks]

    async def renew_all(self, held: list[Held]) -> str | None:
        return next((h.lock for h in held if self.holders.get(h.lock) != h.holder), None)


@dataclass
class World:
    """What the scheduler did outside itself."""

    clock: list[datetime] = field(default_factory=lambda: [START])
    locks: Locks = field(default_factory=Locks)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    phases: dict[str, str] = field(default_factory=dict)
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    told: list[tuple[str, str, str]] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    cleared: list[tuple[str, str]] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)

    def reasons(self, job: str) -> list[str]:
        return [reason for name, reason, _ in self.told if name == job]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    seen = World()

    async def create_run(api: Any, body: dict[str, Any]) -> bool:
        name = body["metadata"]["name"]
        created = name not in seen.runs
        seen.runs[name] = body
        return created

    async def run_phase(api: Any, namespace: str, name: str, kind: str) -> str | None:
        return seen.phases.get(name, "Running") if name in seen.runs else None

    async def stop_run(api: Any, namespace: str, name: str, kind: str) -> None:
        seen.stopped.append(name)

    async def prune_runs(*args: Any, **kwargs: Any) -> int:
        return 0

    async def patch_status(api: Any, kind: Any, namespace: str, name: str, change: Any) -> bool:
        if name in seen.gone:
            return False
        seen.status[name] = patches.apply_merge_patch(seen.status.get(name, {}), change)
        return True

    async def post(api: Any, about: Any, type: str, reason: str, message: str) -> None:
        seen.told.append((about.name, reason, message))

    async def clear_annotation(api: Any, ns: str, name: str, key: str, value: str, **_: Any) -> str:
        seen.cleared.append((name, key))
        return str(len(seen.cleared) + 1000)

    monkeypatch.setattr(syncjob_runs, "create_run", create_run)
    monkeypatch.setattr(syncjob_runs, "run_phase", run_phase)
    monkeypatch.setattr(syncjob_runs, "stop_run", stop_run)
    monkeypatch.setattr(syncjob_runs, "prune_runs", prune_runs)
    monkeypatch.setattr(statuses, "patch_status", patch_status)
    monkeypatch.setattr(events, "post", post)
    monkeypatch.setattr(kube, "clear_annotation", clear_annotation)
    assert syncapply.statuses is statuses
    assert syncattempts.syncjob_runs is syncjob_runs
    assert syncruns.syncjob_runs is syncjob_runs
    return seen


def scheduler(world: World) -> Scheduler:
    made = Scheduler(api=None, clock=lambda: world.clock[0])  # type: ignore[arg-type]
    made.attempts.store = lambda job: world.locks  # type: ignore[assignment,method-assign,return-value]
    return made


def body(name: str, annotations: dict[str, str] | None = None, version: str = "1") -> Any:
    return {
        "metadata": {
            "name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1,
            "resourceVersion": version, "creationTimestamp": "2026-12-01T00:00:00Z",
            "annotations": annotations or {},
        }
    }  # fmt: skip


def spec(**given: Any) -> SyncJobSpec:
    return SyncJobSpec.model_validate({"schedule": "0 * * * *", "template": TEMPLATE, **given})


async def look(subject: Scheduler) -> None:
    """One execution and the looks it started (and those their news started)."""
    for _ in range(5):
        await subject.execute(CancelToken())
        await subject.settle()
        if all(job.due is not None for job in subject.jobs.values()) and not any(
            job.requests.pending for job in subject.jobs.values()
        ):
            return


async def one_run(world: World, **given: Any) -> tuple[Scheduler, str]:
    """A scheduler with job `etl` (spec `given`) whose slot's run was made: the run's name."""
    subject = scheduler(world)
    subject.track(body("etl"), spec(**given), SyncJobStatus())
    await look(subject)
    [run] = world.runs
    return subject, run


async def test_a_slots_run_is_made_under_its_locks_and_its_end_recorded_and_released(
    world: World,
) -> None:
    subject, run = await one_run(world)
    assert run.startswith("etl-20261207100000")
    assert world.locks.holders == {"treadle-pipeline-etl": run}
    assert world.status["etl"]["activeRuns"][0]["name"] == run
    assert world.reasons("etl") == ["Started"]
    subject.run_changed("uid-etl", run, "Succeeded")
    await look(subject)
    assert world.status["etl"]["lastOutcome"] == "Succeeded"
    assert "activeRuns" not in world.status["etl"] or world.status["etl"]["activeRuns"] == []
    assert world.locks.holders == {}
    assert world.reasons("etl") == ["Started", "Succeeded"]
    assert subject.jobs["uid-etl"].due == datetime(2026, 12, 7, 11, tzinfo=UTC)


async def test_a_run_skipped_on_a_held_lock_is_retried_as_soon_as_it_is_released(
    world: World,
) -> None:
    subject = scheduler(world)
    subject.track(body("first"), spec(pipeline="orders"), SyncJobStatus())
    await look(subject)
    [holder] = world.runs
    subject.track(body("second"), spec(pipeline="orders"), SyncJobStatus())
    await look(subject)
    assert world.status["second"]["lastOutcome"] == "Skipped"
    assert world.status["second"]["lastSkipHolder"] == holder
    retry = subject.jobs["uid-second"].due
    assert retry == START + timedelta(minutes=5)  # its retry inside the slot ...
    subject.run_changed("uid-first", holder, "Succeeded")
    await look(subject)  # ... comes now: the lock was released
    assert [n for n in world.runs if n.startswith("second-")]
    assert world.status["second"]["lastOutcome"] == "Skipped"  # until the run ends
    assert world.reasons("second") == ["Skipped", "RetryingSkipped", "Started"]


async def test_a_run_by_hand_waits_for_the_run_under_way_then_starts_and_is_answered_once(
    world: World,
) -> None:
    subject, scheduled = await one_run(world)
    subject.request("uid-etl", RUN_NOW_ANNOTATION, "t1", "2")
    await look(subject)
    manual = world.status["etl"]["manualRun"]
    assert (manual["outcome"], manual["requested"]) == ("Waiting", "t1")
    assert world.cleared == []  # the request stays until it starts
    subject.run_changed("uid-etl", scheduled, "Succeeded")
    await look(subject)
    assert world.status["etl"]["manualRun"]["outcome"] == "Started"
    assert [n for n in world.runs if "-manual-" in n]
    assert world.cleared == [("etl", RUN_NOW_ANNOTATION)]
    subject.request("uid-etl", RUN_NOW_ANNOTATION, "t1", "3")  # its own writes come back
    await look(subject)
    assert len([n for n in world.runs if "-manual-" in n]) == 1


async def test_a_backfill_runs_its_slots_in_parallel_and_is_complete_when_all_ended(
    world: World,
) -> None:
    subject, scheduled = await one_run(world)
    value = '{"from": "2026-12-07T05:00:00Z", "to": "2026-12-07T08:00:00Z", "parallel": 2}'
    subject.request("uid-etl", BACKFILL_ANNOTATION, value, "2")
    await look(subject)
    assert world.cleared == [("etl", BACKFILL_ANNOTATION)]  # answered: it began
    waiting = world.status["etl"]["backfill"]["message"]
    assert waiting.startswith(f"waiting: treadle-pipeline-etl is held by {scheduled}")
    subject.run_changed("uid-etl", scheduled, "Succeeded")  # the lock is released ...
    await look(subject)
    filled = sorted(n for n in world.runs if n.endswith("-b1"))
    assert len(filled) == 2  # ... and two slots start at once, oldest first
    for run in filled:
        subject.run_changed("uid-etl", run, "Succeeded")
    await look(subject)
    third = sorted(n for n in world.runs if n.endswith("-b1"))
    assert len(third) == 3
    subject.run_changed("uid-etl", third[-1], "Failed")
    await look(subject)
    backfill = world.status["etl"]["backfill"]
    assert (backfill["phase"], backfill["done"], backfill["failed"]) == ("Complete", 2, 1)
    assert world.status["etl"].get("consecutiveFailures") in (None, 0)  # its own outcomes
    assert world.status["etl"]["lastOutcome"] == "Succeeded"  # the scheduled run's
    assert world.reasons("etl").count("BackfillStarted") == 1
    assert world.reasons("etl")[-1] == "BackfillComplete"


async def test_a_run_past_its_deadline_is_stopped_and_fails(world: World) -> None:
    subject, run = await one_run(world, activeDeadlineSeconds=60)
    assert subject.jobs["uid-etl"].due == START + timedelta(seconds=20)  # its locks' renewal
    world.clock[0] = START + timedelta(seconds=61)
    await look(subject)
    assert world.stopped == [run]
    assert world.status["etl"]["lastOutcome"] == "Failed"
    assert world.reasons("etl")[-1] == "Failed"
    assert world.locks.holders == {}


async def test_a_job_whose_status_cannot_be_written_is_forgotten(world: World) -> None:
    subject = scheduler(world)
    world.gone.add("etl")
    subject.track(body("etl"), spec(), SyncJobStatus())
    await look(subject)
    assert "uid-etl" not in subject.jobs


async def test_a_run_whose_lock_was_taken_over_is_stopped_and_fails(world: World) -> None:
    subject, run = await one_run(world)
    world.locks.holders["treadle-pipeline-etl"] = "someone-else"  # it lapsed and went
    world.clock[0] = START + timedelta(seconds=21)  # the renewal
    await look(subject)
    assert world.stopped == [run]
    assert world.status["etl"]["lastOutcome"] == "Failed"
    assert world.reasons("etl") == ["Started", "LockLost", "Failed"]
    assert world.locks.holders == {"treadle-pipeline-etl": "someone-else"}  # not released


async def test_after_a_restart_a_run_under_way_is_adopted_under_its_own_holder(
    world: World,
) -> None:
    run = {"name": "etl-1", "kind": "Pod", "slot": "2026-12-07T10:00:00Z", "holder": "etl-1"}
    status = SyncJobStatus.model_validate(
        {"activeRuns": [run], "activeRun": "etl-1", "currentSlot": "2026-12-07T10:00:00Z"}
    )
    world.runs["etl-1"] = {}
    subject = scheduler(world)
    subject.track(body("etl"), spec(), status)
    await look(subject)
    assert world.locks.holders == {"treadle-pipeline-etl": "etl-1"}
    assert world.runs.keys() == {"etl-1"}  # no second run of the slot
    subject.run_changed("uid-etl", "etl-1", "Succeeded")
    await look(subject)
    assert world.status["etl"]["lastOutcome"] == "Succeeded"


async def test_replace_stops_the_run_under_way_and_starts_the_new_slots(world: World) -> None:
    subject, old = await one_run(world, concurrencyPolicy="Replace")
    world.clock[0] = START + timedelta(hours=1)
    await look(subject)
    assert world.stopped == [old]
    new = [n for n in world.runs if n != old]
    assert len(new) == 1
    assert new[0].startswith("etl-20261207110000")
    assert world.reasons("etl") == ["Started", "Replacing", "Replaced", "Started"]
    assert world.status["etl"].get("consecutiveFailures") in (None, 0)


async def test_a_run_the_api_server_refuses_fails_at_once_and_gives_its_locks_back(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightkube import ApiError
    from lightkube.models.meta_v1 import Status

    async def refused(api: Any, body: dict[str, Any]) -> bool:
        raise ApiError(status=Status(code=422, message="spec.containers: required"))  # type: ignore[call-arg]

    monkeypatch.setattr(syncjob_runs, "create_run", refused)
    subject = scheduler(world)
    subject.track(body("etl"), spec(), SyncJobStatus())
    await look(subject)
    assert world.status["etl"]["lastOutcome"] == "Failed"
    assert world.told[-1][2].endswith("could not be made: spec.containers: required")
    assert world.locks.holders == {}


async def test_a_failed_attempt_is_tried_again_later_and_a_run_by_hand_asked_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    async def flaky(api: Any, body: dict[str, Any]) -> bool:
        calls.append(body["metadata"]["name"])
        if len(calls) == 1:
            raise ConnectionError("the API server went away")
        world.runs[body["metadata"]["name"]] = body
        return True

    monkeypatch.setattr(syncjob_runs, "create_run", flaky)
    subject = scheduler(world)
    subject.track(body("etl", {RUN_NOW_ANNOTATION: "t1"}), spec(), SyncJobStatus())
    await subject.execute(CancelToken())
    await subject.settle()
    job = subject.jobs["uid-etl"]
    assert job.due == START + timedelta(seconds=syncattempts.RETRY_AFTER_ERROR_SECONDS)
    assert job.requests.pending == {RUN_NOW_ANNOTATION: "t1"}  # asked again, not lost
    assert world.cleared == []
    assert world.locks.holders == {}  # what it took is given back
    await look(subject)
    assert [n for n in world.runs if "-manual-" in n]
    assert world.cleared == [("etl", RUN_NOW_ANNOTATION)]


async def test_a_degraded_job_schedules_again_after_a_reset_or_a_new_spec(world: World) -> None:
    from treadle.api import RESET_FAILURES_ANNOTATION

    failed = SyncJobStatus.model_validate(
        {"consecutiveFailures": 3, "currentSlot": "2026-12-07T09:00:00Z", "lastOutcome": "Failed"}
    )
    subject = scheduler(world)
    subject.track(body("etl"), spec(maxConsecutiveFailures=3), failed)
    await look(subject)
    assert world.runs == {}
    assert world.status["etl"]["conditions"][0]["reason"] == "TooManyFailures"
    subject.request("uid-etl", RESET_FAILURES_ANNOTATION, "now", "2")
    await look(subject)
    assert world.status["etl"]["consecutiveFailures"] == 0
    assert "FailuresReset" in world.reasons("etl")
    assert world.cleared == [("etl", RESET_FAILURES_ANNOTATION)]
    assert len(world.runs) == 1  # the current slot runs at once


async def test_a_run_whose_pod_was_deleted_fails_and_says_so(world: World) -> None:
    subject, run = await one_run(world)
    subject.run_changed("uid-etl", run, None)  # the watch saw it deleted
    await look(subject)
    assert world.status["etl"]["lastOutcome"] == "Failed"
    assert world.told[-1][2] == f"run {run} its pod was deleted"


async def test_allow_runs_slots_beside_each_other_under_one_holder(world: World) -> None:
    subject = scheduler(world)
    subject.track(body("etl"), spec(concurrencyPolicy="Allow"), SyncJobStatus())
    await look(subject)
    world.clock[0] = START + timedelta(hours=1)
    await look(subject)
    assert len(world.runs) == 2
    assert world.locks.holders == {"treadle-pipeline-etl": "etl-runs"}
    first, second = sorted(world.runs)
    subject.run_changed("uid-etl", first, "Succeeded")
    await look(subject)
    assert world.locks.holders == {"treadle-pipeline-etl": "etl-runs"}  # the other still runs
    subject.run_changed("uid-etl", second, "Succeeded")
    await look(subject)
    assert world.locks.holders == {}


async def test_with_allow_a_run_by_hand_starts_beside_the_run_under_way(world: World) -> None:
    subject, scheduled = await one_run(world, concurrencyPolicy="Allow")
    subject.request("uid-etl", RUN_NOW_ANNOTATION, "t1", "2")
    await look(subject)
    manual = [n for n in world.runs if "-manual-" in n]
    assert len(manual) == 1
    assert world.status["etl"]["manualRun"] == {
        "requested": "t1", "outcome": "Started", "run": manual[0],
        "message": f"run {manual[0]} started",
    }  # fmt: skip
    assert {r["name"] for r in world.status["etl"]["activeRuns"]} == {scheduled, manual[0]}
    assert world.reasons("etl") == ["Started", "RunRequested", "Started"]
