"""Conditions, exit tasks, retry rules, stop and terminate, through the engine."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from support.conditions import condition
from support.steps import STORED, T0, cmd, failed, ok, spec, step
from treadle.core import engine, timestamps


@pytest.fixture(autouse=True)
def _empty_store() -> None:
    STORED.clear()


def phases(found: engine.Step) -> dict[str, tuple[str, str | None]]:
    return {name: (entry.phase, entry.reason) for name, entry in found.status.tasks.items()}


def test_a_false_condition_skips_its_task_and_its_dependents_still_run() -> None:
    workflow = spec(
        cmd("check"),
        cmd("sync", when="{{ tasks.check.output.changed }}", dependsOn=["check"]),
        cmd("report", dependsOn=["sync"]),
    )
    first = step(workflow, {})
    second = step(workflow, first.status, [ok(first.enqueue[0], {"changed": False})])
    assert phases(second)["sync"] == ("Skipped", "ConditionFalse")
    assert [m.task for m in second.enqueue] == ["report"]  # Argo's rule
    third = step(workflow, second.status, [ok(second.enqueue[0])])
    assert (third.wire["phase"], third.wire["progress"]) == ("Succeeded", "3/3")


@pytest.mark.parametrize("value", [False, "false", "False", 0, "", [], None, "no"])
def test_false_values_of_a_condition(value: Any) -> None:
    workflow = spec(cmd("a"), cmd("b", when="{{ tasks.a.output.v }}", dependsOn=["a"]))
    first = step(workflow, {})
    second = step(workflow, first.status, [ok(first.enqueue[0], {"v": value})])
    assert phases(second)["b"] == ("Skipped", "ConditionFalse")


@pytest.mark.parametrize("value", [True, "true", 1, "yes", [0], {"k": 1}])
def test_true_values_of_a_condition(value: Any) -> None:
    workflow = spec(cmd("a"), cmd("b", when="{{ tasks.a.output.v }}", dependsOn=["a"]))
    first = step(workflow, {})
    second = step(workflow, first.status, [ok(first.enqueue[0], {"v": value})])
    assert [m.task for m in second.enqueue] == ["b"]


def test_a_task_after_a_dead_letter_is_skipped_as_upstream_failed() -> None:
    workflow = spec(cmd("a", retry={"limit": 0}), cmd("b", dependsOn=["a"]))
    first = step(workflow, {})
    second = step(workflow, first.status, [failed(first.enqueue[0])])
    assert phases(second)["b"] == ("Skipped", "UpstreamFailed")
    assert second.wire["phase"] == "Failed"


def test_a_condition_that_cannot_render_dead_letters_its_task() -> None:
    workflow = spec(cmd("a"), cmd("b", when="{{ tasks.a.output.missing.deeper }}", dependsOn=["a"]))
    first = step(workflow, {})
    second = step(workflow, first.status, [ok(first.enqueue[0], {})])
    assert second.status.tasks["b"].phase == "DeadLettered"
    assert "when:" in str(second.status.tasks["b"].error)


def test_a_condition_on_a_for_each_task_is_decided_once_for_all_its_children() -> None:
    workflow = spec(cmd("a"), cmd("b", when="false", forEach="[1, 2, 3]", dependsOn=["a"]))
    first = step(workflow, {})
    second = step(workflow, first.status, [ok(first.enqueue[0])])
    assert phases(second)["b"] == ("Skipped", "ConditionFalse")
    assert second.wire["phase"] == "Succeeded"


# exit tasks ---------------------------------------------------------------------------------


def with_exits(*tasks: dict[str, Any], **extra: Any) -> Any:
    exits = [
        cmd("notify", "echo", "{{ workflow.phase }} {{ workflow.failures | length }}"),
        cmd("cleanup", "rm", dependsOn=["notify"]),
    ]
    return spec(*tasks, onExit=exits, **extra)


def test_exit_tasks_run_after_a_success_and_see_the_outcome() -> None:
    workflow = with_exits(cmd("a"))
    first = step(workflow, {})
    assert [m.task for m in first.enqueue] == ["a"]
    second = step(workflow, first.status, [ok(first.enqueue[0])])
    assert second.wire["phase"] == "Running"
    assert second.wire["message"].startswith("running exit tasks (Succeeded")
    assert second.enqueue[0].action == {"command": {"args": ["echo", "Succeeded 0"]}}
    third = step(workflow, second.status, [ok(second.enqueue[0])])
    assert [m.task for m in third.enqueue] == ["cleanup"]
    last = step(workflow, third.status, [ok(third.enqueue[0])])
    assert last.wire["phase"] == "Succeeded"
    assert last.finished_now
    assert last.wire["progress"] == "3/3"


def test_exit_tasks_run_after_a_failure_and_their_own_failure_changes_nothing() -> None:
    workflow = with_exits(
        cmd("a", retry={"limit": 0}), cmd("b", dependsOn=["a"]), defaults={"retry": {"limit": 0}}
    )
    first = step(workflow, {})
    second = step(workflow, first.status, [failed(first.enqueue[0], "503 from api")])
    assert phases(second)["b"] == ("Skipped", "UpstreamFailed")
    assert second.enqueue[0].action == {"command": {"args": ["echo", "Failed 1"]}}
    third = step(workflow, second.status, [failed(second.enqueue[0])])
    assert third.status.tasks["notify"].phase == "DeadLettered"
    assert phases(third)["cleanup"] == ("Skipped", "UpstreamFailed")
    assert third.wire["phase"] == "Failed"
    assert third.wire["message"] == "dead-lettered: a; exit tasks: not succeeded: cleanup, notify"


def test_a_failing_exit_task_leaves_a_success_a_success() -> None:
    workflow = with_exits(cmd("a"), defaults={"retry": {"limit": 0}})
    first = step(workflow, {})
    second = step(workflow, first.status, [ok(first.enqueue[0])])
    third = step(workflow, second.status, [failed(second.enqueue[0])])
    assert third.wire["phase"] == "Succeeded"
    assert "exit tasks: not succeeded" in third.wire["message"]


def test_exit_tasks_run_after_the_deadline() -> None:
    workflow = with_exits(cmd("slow"), activeDeadlineSeconds=60)
    first = step(workflow, {})
    late = step(workflow, first.status, now=T0 + timedelta(seconds=61))
    assert phases(late)["slow"] == ("Skipped", "Deadline")
    assert [m.task for m in late.enqueue] == ["notify"]
    assert late.enqueue[0].action == {"command": {"args": ["echo", "Failed 0"]}}
    # the straggler of the skipped task changes nothing
    after = step(workflow, late.status, [ok(first.enqueue[0])], now=T0 + timedelta(seconds=62))
    assert phases(after)["slow"] == ("Skipped", "Deadline")


# retry rules --------------------------------------------------------------------------------


def test_a_404_is_dead_lettered_at_once_naming_why() -> None:
    workflow = spec(cmd("a"))
    first = step(workflow, {})
    cause = {"cause": "httpStatus", "status": 404}
    second = step(workflow, first.status, [failed(first.enqueue[0], "404 from api", cause)])
    assert second.status.tasks["a"].phase == "DeadLettered"
    assert second.status.dead_letters[0].attempts == 1
    assert second.status.dead_letters[0].error == (
        "not retried (HTTP 404 is not in retry.retryOn.httpStatus (429, 5xx)): 404 from api"
    )


def test_a_503_is_retried_no_sooner_than_its_retry_after() -> None:
    workflow = spec(cmd("a", retry={"limit": 3, "backoff": {"maxDurationSeconds": 120}}))
    first = step(workflow, {})
    cause = {"cause": "httpStatus", "status": 503, "retryAfter": 45}
    second = step(workflow, first.status, [failed(first.enqueue[0], "503", cause)])
    entry = second.status.tasks["a"]
    assert entry.phase == "Retrying"
    assert timestamps.parse(str(entry.next_retry_at)) >= T0 + timedelta(seconds=45)
    capped = spec(cmd("a", retry={"backoff": {"maxDurationSeconds": 10}}))
    third = step(capped, step(capped, {}).status, [failed(first.enqueue[0], "503", cause)])
    due = timestamps.parse(str(third.status.tasks["a"].next_retry_at))
    assert due <= T0 + timedelta(seconds=11)


def test_exit_codes_and_exceptions_follow_the_rules_of_the_task() -> None:
    workflow = spec(
        cmd("a", retry={"retryOn": {"exitCodes": [75]}}),
        cmd("b", retry={"retryOn": {"exceptions": ["TimeoutError"]}}),
    )
    first = step(workflow, {})
    a, b = first.enqueue
    second = step(
        workflow,
        first.status,
        [
            failed(a, "exit code 1", {"cause": "exit", "exitCode": 1}),
            failed(
                b,
                "ConnectTimeout",
                {"cause": "exception", "exceptions": ["ConnectTimeout", "TimeoutError"]},
            ),
        ],
    )
    assert second.status.tasks["a"].phase == "DeadLettered"
    assert second.status.tasks["b"].phase == "Retrying"


def test_a_failed_for_each_child_follows_the_rules_too() -> None:
    workflow = spec(cmd("a", forEach="[1, 2]"))
    first = step(workflow, {})
    second = step(
        workflow,
        first.status,
        [failed(first.enqueue[0], "400", {"cause": "httpStatus", "status": 400})],
    )
    assert second.status.tasks["a"].dead_items == "0"
    assert second.status.tasks["a"].retry_at is None


# stop and terminate -------------------------------------------------------------------------


def test_stop_lets_running_attempts_finish_then_runs_the_exit_tasks() -> None:
    tasks = (cmd("a"), cmd("b"), cmd("c", dependsOn=["a"]))
    first = step(with_exits(*tasks), {})
    stopping = with_exits(*tasks, shutdown="Stop")
    held = step(stopping, first.status)
    assert (held.wire["phase"], held.enqueue) == ("Running", [])
    assert held.wire["message"].startswith("stopping")
    one = step(stopping, held.status, [ok(first.enqueue[0])])
    assert one.enqueue == []  # c would be ready, but nothing new starts
    two = step(stopping, one.status, [ok(first.enqueue[1])])
    assert phases(two)["c"] == ("Skipped", "Stopped")
    assert [m.task for m in two.enqueue] == ["notify"]
    assert two.enqueue[0].action == {"command": {"args": ["echo", "Stopped 0"]}}
    three = step(stopping, two.status, [ok(two.enqueue[0])])
    done = step(stopping, three.status, [ok(three.enqueue[0])])
    assert done.wire["phase"] == "Stopped"
    stalled = condition(done.wire, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "Stopped")


def test_terminate_gives_up_on_running_attempts_at_once() -> None:
    tasks = (cmd("a"), cmd("b", forEach="[1, 2, 3]"))
    first = step(spec(*tasks), {})
    assert len(first.enqueue) == 4
    ended = step(spec(*tasks, shutdown="Terminate"), first.status)
    assert phases(ended) == {"a": ("Skipped", "Terminated"), "b": ("Skipped", "Terminated")}
    assert (ended.wire["phase"], ended.wire["progress"]) == ("Terminated", "4/4")
    assert [(n.type, n.reason) for n in ended.notices] == [("Normal", "Terminated")]
    assert ended.status.tasks["b"].running_items == ""
    late = step(spec(*tasks, shutdown="Terminate"), ended.status, [ok(first.enqueue[0])])
    assert late.wire == ended.wire


def test_stopping_a_suspended_run_skips_its_tasks_and_runs_its_exit_tasks() -> None:
    first = step(with_exits(cmd("a"), suspend=True), {})
    assert (first.wire["phase"], first.enqueue) == ("Suspended", [])
    stopped = step(with_exits(cmd("a"), suspend=True, shutdown="Stop"), first.status)
    assert phases(stopped)["a"] == ("Skipped", "Stopped")
    assert [m.task for m in stopped.enqueue] == ["notify"]


def test_reading_a_skipped_tasks_output_says_it_was_skipped() -> None:
    workflow = spec(
        cmd("a"),
        cmd("b", when="false", dependsOn=["a"]),
        cmd("c", "echo", "{{ tasks.b.output }}", dependsOn=["b"]),
        cmd("d", "echo", "{{ 'ran' if tasks.b is defined else 'skipped' }}", dependsOn=["b"]),
    )
    first = step(workflow, {})
    second = step(workflow, first.status, [ok(first.enqueue[0])])
    error = str(second.status.tasks["c"].error)
    assert error.startswith(
        "task 'b' was skipped (ConditionFalse) and has no output "
        "(`{{ tasks.b is defined }}` tells whether it ran); template: "
    )
    assert [m.action for m in second.enqueue] == [{"command": {"args": ["echo", "skipped"]}}]
