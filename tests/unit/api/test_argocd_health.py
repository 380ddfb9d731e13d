"""The Argo CD health checks shipped in docs/argocd, run by a Lua interpreter on statuses the
engine and the scheduler really write."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import lupa
import pytest

from support.cluster import REPO
from treadle.api.pools import WorkerPoolSpec
from treadle.api.syncjobs import SyncJobSpec, SyncJobStatus
from treadle.api.workflows import WorkflowSpec
from treadle.core import engine, pools, slots, syncs
from treadle.core.messages import TaskResult

HEALTH = REPO / "docs" / "argocd" / "treadle.dev"
NOW = datetime(2026, 11, 22, 8, tzinfo=UTC)
WHO = engine.Identity(uid="u", name="wf", namespace="ns", pool="wf-u")


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    found = lua.execute((HEALTH / kind / "health.lua").read_text())
    return found["status"], found.message


def workflow_object(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    found: dict[str, Any] = {"metadata": {"name": "wf", "generation": generation}, "spec": {}}
    if status is not None:
        found["status"] = status
    return found


def run_workflow(outcome: str) -> dict[str, Any]:
    spec = WorkflowSpec.model_validate(
        {"tasks": [{"name": "a", "command": {"args": ["true"]}, "retry": {"limit": 0}}]}
    )
    first = engine.advance(spec, {}, [], now=NOW, who=WHO, generation=1, rng=random.Random(0))
    [attempt] = first.enqueue
    result = TaskResult("u", "ns/wf", "a", None, attempt.attempt, outcome, error="boom")  # type: ignore[arg-type]
    return engine.advance(spec, first.status, [result], now=NOW, who=WHO, generation=1).wire


def test_a_workflow_is_healthy_once_it_succeeded_and_degraded_when_it_failed() -> None:
    assert health("Workflow", workflow_object(None)) == (
        "Progressing",
        "Waiting for the Treadle operator",
    )
    assert health("Workflow", workflow_object(run_workflow("succeeded")))[0] == "Healthy"
    status, message = health("Workflow", workflow_object(run_workflow("failed")))
    assert (status, message) == ("Degraded", "dead-lettered: a (1/1)")


@pytest.mark.parametrize(
    ("phase", "expected"),
    [("Pending", "Progressing"), ("Running", "Progressing"), ("Suspended", "Suspended"),
     ("Invalid", "Degraded"), ("Stopped", "Degraded"), ("Terminated", "Degraded")],
)  # fmt: skip
def test_each_workflow_phase_has_its_health(phase: str, expected: str) -> None:
    status = {"phase": phase, "observedGeneration": 1, "message": "m"}
    assert health("Workflow", workflow_object(status))[0] == expected


def test_a_workflow_whose_new_spec_the_operator_has_not_seen_is_progressing() -> None:
    stale = workflow_object(run_workflow("succeeded"), generation=2)
    assert health("Workflow", stale)[0] == "Progressing"


def sync_object(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "j", "generation": 1}, "spec": spec, "status": status}


def test_a_sync_job_is_healthy_while_it_schedules_and_degraded_after_too_many_failures() -> None:
    spec = SyncJobSpec.model_validate(
        {"schedule": "0 * * * *", "maxConsecutiveFailures": 2, "template": {"spec": {}}}
    )
    slot = slots.Slot(NOW, NOW.replace(hour=9))
    status = SyncJobStatus()
    for _ in range(2):
        status = syncs.finished(
            spec, syncs.started(status, slot, now=NOW, run="j-1"), now=NOW, succeeded=False
        )
        shown = syncs.wire(
            syncs.with_conditions(spec, status, now=NOW, generation=1, message="waiting")
        )
        if status.consecutive_failures == 1:
            assert health("SyncJob", sync_object(shown)) == ("Healthy", "last run: Failed")
    status_name, message = health("SyncJob", sync_object(shown))
    assert status_name == "Degraded"
    assert message.startswith("2 failed runs in a row (maxConsecutiveFailures 2)")
    invalid = {"observedGeneration": 1, "conditions": [
        {"type": "Ready", "status": "False", "reason": "Invalid", "message": "spec.schedule: bad"}
    ]}  # fmt: skip
    assert health("SyncJob", sync_object(invalid)) == ("Degraded", "spec.schedule: bad")


def test_a_suspended_sync_job_is_suspended() -> None:
    spec = SyncJobSpec.model_validate(
        {"schedule": "0 * * * *", "suspend": True, "template": {"spec": {}}}
    )
    shown = syncs.wire(
        syncs.with_conditions(spec, SyncJobStatus(), now=NOW, generation=1, message="suspended")
    )
    assert health("SyncJob", sync_object(shown, suspend=True)) == (
        "Suspended",
        "spec.suspend is true",
    )


def pool_object(status: Any, generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "p", "generation": generation}, "spec": {}, "status": status}


def test_a_worker_pool_is_healthy_when_ready_progressing_while_scaling_degraded_when_stalled() -> (
    None
):
    spec = WorkerPoolSpec()

    def looked(rollout: pools.Rollout, replicas: int = 2) -> dict[str, Any]:
        return pools.pool_status(
            spec, [], name="p", replicas=replicas, rollout=rollout, load=pools.Load(0, 0),
            generation=1, now=NOW,
        ).wire()  # fmt: skip

    assert health("WorkerPool", {"metadata": {"name": "p"}, "spec": {}})[0] == "Progressing"
    assert health("WorkerPool", pool_object(looked(pools.Rollout(ready=2, updated=2)))) == (
        "Healthy",
        "2/2 workers ready",
    )
    assert health("WorkerPool", pool_object(looked(pools.Rollout(), replicas=0)))[0] == "Healthy"
    assert health("WorkerPool", pool_object(looked(pools.Rollout(ready=1, updated=1))))[0] == (
        "Progressing"
    )
    stalled = looked(pools.Rollout(stalled="ProgressDeadlineExceeded: image cannot be pulled"))
    assert health("WorkerPool", pool_object(stalled)) == (
        "Degraded",
        "ProgressDeadlineExceeded: image cannot be pulled",
    )
    invalid = pools.invalid_status([], "spec.env[0].name: no", generation=1, now=NOW).wire()
    assert health("WorkerPool", pool_object(invalid))[0] == "Degraded"
    assert health("WorkerPool", pool_object(looked(pools.Rollout(2, 2)), generation=2))[0] == (
        "Progressing"
    )
