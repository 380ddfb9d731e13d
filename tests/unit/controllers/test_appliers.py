"""The appliers (the only writers of Workflow and SyncJob status, and of their Events) and a
driver pass's intake, with the API server and Redis recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from treadle.api.syncjobs import SyncJobSpec, SyncJobStatus
from treadle.api.workflows import WorkflowSpec, WorkflowStatus
from treadle.controllers import intake, metrics, syncapply, wfapply
from treadle.controllers.jobs import Job
from treadle.controllers.tracked import Tracked
from treadle.core import engine
from treadle.core.messages import TaskResult
from treadle.core.syncsteps import Count, Prune, SyncStep, Tell
from treadle.services.results import QueueDepth, Received

NOW = datetime(2026, 12, 7, 10, tzinfo=UTC)
TEMPLATE = {"spec": {"containers": [{"name": "c", "image": "x"}]}}


class Api:
    """The status writes, Events and prunings the appliers make, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.gone = False

    async def patch_status(
        self, api: Any, kind: Any, namespace: str, name: str, change: Any
    ) -> bool:
        self.calls.append(("status", change))
        return not self.gone

    async def patch_workflow_status(self, api: Any, namespace: str, name: str, change: Any) -> bool:
        self.calls.append(("status", change))
        return not self.gone

    async def post(self, api: Any, about: Any, type: str, reason: str, message: str) -> None:
        self.calls.append(("event", reason))

    async def prune_runs(self, api: Any, namespace: str, job: str, **given: Any) -> int:
        self.calls.append(("prune", given))
        return 0


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Api:
    recorded = Api()
    monkeypatch.setattr(syncapply.statuses, "patch_status", recorded.patch_status)
    monkeypatch.setattr(wfapply.statuses, "patch_workflow_status", recorded.patch_workflow_status)
    monkeypatch.setattr(syncapply.events, "post", recorded.post)
    monkeypatch.setattr(syncapply.syncjob_runs, "prune_runs", recorded.prune_runs)
    return recorded


def job() -> Job:
    spec = SyncJobSpec.model_validate(
        {"schedule": "0 * * * *", "template": TEMPLATE, "successfulRunsHistoryLimit": 2}
    )
    return Job("uid", "etl", "ns", spec, SyncJobStatus(), NOW, 1)


async def test_the_sync_applier_writes_what_changed_then_carries_effects_out_in_order(
    api: Api,
) -> None:
    applier, subject = syncapply.SyncApplier(None), job()  # type: ignore[arg-type]
    started = metrics.SYNC_RUNS_STARTED._value.get()
    step = SyncStep(
        SyncJobStatus(last_outcome="Succeeded"),
        "run r succeeded",
        (Tell("Normal", "Succeeded", "run r succeeded"), Count("started"), Prune("Pod", 3)),
    )
    assert await applier.apply(subject, step, NOW)
    kinds = [kind for kind, _ in api.calls]
    assert kinds == ["status", "event", "prune"]
    change = api.calls[0][1]
    assert change["lastOutcome"] == "Succeeded"
    assert {c["type"] for c in change["conditions"]} == {
        "Ready",
        "Reconciling",
        "Stalled",
        "Degraded",
    }
    assert api.calls[2][1] == {
        "keep_succeeded": 2, "keep_failed": 1, "keep_backfills_from": 3, "kinds": ("Pod",),
    }  # fmt: skip
    assert metrics.SYNC_RUNS_STARTED._value.get() == started + 1
    assert subject.status.last_outcome == "Succeeded"
    assert subject.written["lastOutcome"] == "Succeeded"
    api.calls.clear()
    assert await applier.apply(subject, SyncStep(subject.status, "run r succeeded"), NOW)
    assert api.calls == []  # nothing changed: nothing written


async def test_the_sync_applier_says_a_job_is_gone_and_does_nothing_more(api: Api) -> None:
    api.gone = True
    subject = job()
    step = SyncStep(SyncJobStatus(last_outcome="Failed"), "x", (Tell("Warning", "Failed", "x"),))
    assert not await syncapply.SyncApplier(None).apply(subject, step, NOW)  # type: ignore[arg-type]
    assert [kind for kind, _ in api.calls] == ["status"]
    assert subject.status.last_outcome is None  # what was not written is not kept


def tracked(name: str = "w", finished: bool = False, pool: str | None = "default") -> Tracked:
    spec = WorkflowSpec.model_validate(
        {"tasks": [{"name": "a", "python": {"callable": "time:time"}}]}
    )
    who = engine.Identity.of({"uid": name, "name": name, "namespace": "ns"}, pool)
    status = WorkflowStatus(
        run_generation=1, finished_at="2026-12-07T09:00:00Z" if finished else None
    )
    return Tracked(who, spec, status, 1, NOW)


async def test_the_workflow_applier_writes_a_merge_patch_of_what_changed(api: Api) -> None:
    applier, one = wfapply.WorkflowApplier(None), tracked()  # type: ignore[arg-type]
    one.written = {"phase": "Running", "progress": "0/1"}
    assert await applier.write(one, {"phase": "Running", "progress": "1/1"}, NOW)
    assert api.calls == [("status", {"progress": "1/1"})]
    assert (one.written_at, one.written["progress"]) == (NOW, "1/1")
    assert await applier.write(one, {"phase": "Running", "progress": "1/1"}, NOW)
    assert len(api.calls) == 1
    api.gone = True
    assert not await applier.write(one, {"phase": "Succeeded"}, NOW + timedelta(seconds=1))
    assert one.written_at == NOW


class Stream:
    """A driver's results stream: what a pass reads, in batches."""

    def __init__(self, batches: list[int]) -> None:
        self.batches = batches
        self.set_aside = 0
        self.repairs: list[tuple[str, str]] = []
        self.lost_results: set[str] = set()
        self.asides: list[tuple[str, str]] = []
        self.forgot: list[tuple[str, list[str]]] = []
        self.reads: list[dict[str, Any]] = []

    async def read(self, served: dict[str, Any], count: int, block_ms: int) -> list[Received]:
        self.reads.append(dict(served))
        size = self.batches.pop(0) if self.batches else 0
        uids = [uid for pool in served.values() for uid in pool] or ["nobody"]
        return [
            Received("p", f"{len(self.reads)}-{i}", result(uids[i % len(uids)]))
            for i in range(size)
        ]

    async def forget_outcomes(self, pool: str, uids: list[str]) -> None:
        self.forgot.append((pool, uids))

    async def depth(self, pools: list[str]) -> QueueDepth:
        return QueueDepth(1, 2, 3, 4)


def result(uid: str) -> TaskResult:
    return TaskResult(
        workflow_uid=uid, workflow=uid, task="a", item=None, attempt=1, outcome="succeeded"
    )


async def test_a_pass_reads_only_for_unfinished_workflows_and_drains_full_batches() -> None:
    running, done = tracked("running"), tracked("done", finished=True)
    workflows = {"running": running, "done": done}
    stream = Stream([intake.BATCH, intake.BATCH, 5])
    subject = intake.ResultIntake(stream, None, workflows)  # type: ignore[arg-type]
    received = await subject.read(block_ms=100)
    assert len(stream.reads) == 3  # two full batches drained, the short one ends it
    assert set(stream.reads[0]) == {running.who.pool}
    assert list(stream.reads[0][running.who.pool]) == ["running"]
    assert len(received.results["running"]) == 2 * intake.BATCH + 5
    assert received.ids["running"][0] == ("p", "1-0")


async def test_a_repaired_stream_makes_its_workflows_fail_what_was_in_flight_there() -> None:
    hit, other = tracked("hit"), tracked("other", pool=None)  # on pods of its own
    stream = Stream([])
    stream.lost_results = {hit.who.pool}
    subject = intake.ResultIntake(stream, None, {"hit": hit, "other": other})  # type: ignore[arg-type]
    await subject.lost_results(NOW)
    assert stream.forgot == [(hit.who.pool, ["hit"])]
    assert hit.lost_results == {hit.who.pool}
    assert hit.due == NOW
    assert other.lost_results == set()


async def test_queue_gauges_are_read_at_most_every_fifteen_seconds() -> None:
    stream = Stream([])
    subject = intake.ResultIntake(stream, None, {"w": tracked()})  # type: ignore[arg-type]
    await subject.gauges(NOW)
    assert metrics.POISON_MESSAGES._value.get() == 4
    metrics.POISON_MESSAGES.set(0)
    await subject.gauges(NOW + timedelta(seconds=5))
    assert metrics.POISON_MESSAGES._value.get() == 0  # not read again yet
    await subject.gauges(NOW + timedelta(seconds=intake.GAUGE_SECONDS))
    assert metrics.POISON_MESSAGES._value.get() == 4
