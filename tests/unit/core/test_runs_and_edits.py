"""A started workflow's spec is fixed; a change around the webhook runs it again under a new run
generation; any attempt's success of the current run counts (issue #13, problem 2)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from treadle.api.workflows import WorkflowSpec, WorkflowStatus
from treadle.core import admission, edits, engine
from treadle.core.messages import TaskMessage, TaskResult, idempotency_key

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
WHO = engine.Identity(uid="u1", name="wf", namespace="ns", pool="wf-u1")
WORKFLOW = {"name": "wf", "namespace": "ns", "uid": "u1"}
SPEC: dict[str, Any] = {
    "tasks": [
        {"name": "a", "command": {"args": ["echo", "{{ params.greeting }}"]},
         "retry": {"limit": 3, "backoff": {"durationSeconds": 1, "jitter": 0}}},
        {"name": "b", "dependsOn": ["a"], "command": {"args": ["true"]}},
    ],
    "params": {"greeting": "hi"},
}  # fmt: skip


def admitted(
    spec: dict[str, Any], status: WorkflowStatus | dict[str, Any] | None, generation: int
) -> dict[str, Any]:
    """The status admission writes, as the API server then holds it."""
    wire = status.wire() if isinstance(status, WorkflowStatus) else status
    verdict = admission.admit(spec, wire, generation=generation, now=T0, workflow=WORKFLOW)
    assert verdict.status is not None
    return verdict.status.wire()


def result(message: TaskMessage, outcome: str = "succeeded", **changes: Any) -> TaskResult:
    found = TaskResult(
        message.workflow_uid, message.workflow, message.task, message.item, message.attempt,
        outcome, None if outcome == "failed" else "ok", run=message.run,
        error="boom" if outcome == "failed" else None,
    )  # fmt: skip
    return dataclasses.replace(found, **changes)


def advance(
    spec: dict[str, Any],
    status: WorkflowStatus | dict[str, Any],
    results: list[TaskResult],
    **kw: Any,
) -> engine.Step:
    typed = status if isinstance(status, WorkflowStatus) else WorkflowStatus.of(status)
    return engine.advance(
        WorkflowSpec.model_validate(spec), typed, results, now=kw.pop("now", T0), who=WHO,
        generation=typed.observed_generation, **kw,
    )  # fmt: skip


def test_a_new_workflows_attempts_carry_its_run_generation_in_their_key() -> None:
    status = admitted(SPEC, None, 1)
    [message] = advance(SPEC, status, []).enqueue
    assert (status["runGeneration"], message.run) == (1, 1)
    assert message.key == "u1/g1/a/-" == idempotency_key("u1", "a", None, 1)


def test_changing_only_the_mutable_fields_of_a_started_workflow_keeps_its_run() -> None:
    status = advance(SPEC, admitted(SPEC, None, 1), []).wire
    assert edits.has_started(status)
    kept = admitted({**SPEC, "activeDeadlineSeconds": 60, "suspend": True}, status, 2)
    assert kept["tasks"] == status["tasks"]
    assert (kept["observedGeneration"], kept["runGeneration"]) == (2, 1)
    assert {c["observedGeneration"] for c in kept["conditions"]} == {2}


def test_changing_the_rest_of_a_started_workflow_runs_it_again_under_a_new_run_generation() -> None:
    first = advance(SPEC, admitted(SPEC, None, 1), [])
    [old_attempt] = first.enqueue
    changed = {**SPEC, "params": {"greeting": "bye"}}
    restarted = admitted(changed, first.status, 2)
    assert restarted["runGeneration"] == 2
    assert restarted["message"].startswith("the spec changed after the run started")
    step = advance(changed, restarted, [result(old_attempt)])  # the old run's late success
    [new_attempt] = step.enqueue
    assert step.wire["tasks"]["a"]["phase"] == "Queued"
    assert new_attempt.key == "u1/g2/a/-" != old_attempt.key
    assert new_attempt.action["command"]["args"] == ["echo", "bye"]


def test_an_unstarted_workflow_may_change_freely() -> None:
    status = admitted({**SPEC, "suspend": True}, None, 1)
    assert not edits.has_started(status)
    assert admitted({**SPEC, "params": {"greeting": "x"}}, status, 2)["phase"] == "Pending"


def test_the_webhook_names_the_first_fixed_field_that_changed() -> None:
    assert edits.immutable_change(SPEC, {**SPEC, "suspend": True}) == []
    assert edits.immutable_change(SPEC, {**SPEC, "params": {}, "concurrency": 2}) == [
        "concurrency",
        "params",
    ]


def test_a_late_success_of_an_earlier_attempt_counts_after_a_retry_was_scheduled() -> None:
    status = admitted(SPEC, None, 1)
    first = advance(SPEC, status, [])
    [attempt1] = first.enqueue
    failed = advance(SPEC, first.status, [result(attempt1, "failed")])
    assert failed.wire["tasks"]["a"]["phase"] == "Retrying"
    retried = advance(SPEC, failed.status, [], now=T0 + timedelta(seconds=5))
    [attempt2] = retried.enqueue
    assert attempt2.attempt == 2
    late = advance(SPEC, retried.status, [result(attempt1)], now=T0 + timedelta(seconds=6))
    assert late.wire["tasks"]["a"]["phase"] == "Succeeded"
    assert [m.task for m in late.enqueue] == ["b"]
    # attempt 2's own report afterwards changes nothing
    after = advance(SPEC, late.status, [result(attempt2, "failed")], now=T0 + timedelta(seconds=7))
    assert after.wire["tasks"]["a"]["phase"] == "Succeeded"


def test_a_late_success_while_the_retry_waits_counts_too() -> None:
    first = advance(SPEC, admitted(SPEC, None, 1), [])
    [attempt1] = first.enqueue
    failed = advance(SPEC, first.status, [result(attempt1, "failed")])
    late = advance(SPEC, failed.status, [result(attempt1)])
    assert late.wire["tasks"]["a"]["phase"] == "Succeeded"
    assert "nextRetryAt" not in late.wire["tasks"]["a"]


def test_a_late_success_of_a_for_each_child_counts() -> None:
    spec = {
        "tasks": [{"name": "each", "forEach": "{{ params.ids }}", "command": {"args": ["true"]},
                   "retry": {"limit": 3, "backoff": {"durationSeconds": 1, "jitter": 0}}}],
        "params": {"ids": [1, 2]},
    }  # fmt: skip
    first = advance(spec, admitted(spec, None, 1), [])
    one, two = first.enqueue
    failed = advance(spec, first.status, [result(one, "failed")])
    retried = advance(spec, failed.status, [], now=T0 + timedelta(seconds=5))
    assert [m.attempt for m in retried.enqueue] == [2]
    done = advance(spec, retried.status, [result(one), result(two)], now=T0 + timedelta(seconds=6))
    assert done.wire["phase"] == "Succeeded"


def test_a_status_that_cannot_be_read_makes_the_workflow_invalid_naming_the_field() -> None:
    """Status edited around the operator (the status subresource) is not trusted: nothing runs
    from it, and the message says which field is wrong."""
    started = advance(SPEC, admitted(SPEC, None, 1), []).wire
    broken = {**started, "tasks": {**started["tasks"], "a": {"phase": "Exploded"}}}
    verdict = admission.admit(SPEC, broken, generation=1, now=T0, workflow=WORKFLOW)
    assert verdict.runnable is None
    assert verdict.status is not None
    assert verdict.status.phase == "Invalid"
    assert (verdict.status.message or "").startswith("status.tasks.a.phase: Input should be")


def test_a_manual_retry_takes_up_only_a_valid_workflow_whose_status_reads() -> None:
    failed = {"phase": "Failed", "runGeneration": 1}
    found = admission.retryable(SPEC, failed, WORKFLOW)
    assert found is not None
    assert found[1].phase == "Failed"
    assert admission.retryable(SPEC, {"phase": "Invalid"}, WORKFLOW) is None
    assert admission.retryable(SPEC, {"phase": "Exploded"}, WORKFLOW) is None
    assert admission.retryable({"tasks": []}, failed, WORKFLOW) is None
