"""The workflow driver's timing: when status is written, pods are looked at, a workflow is
advanced again, a finished one deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from treadle.core import pacing

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def test_status_is_written_at_most_once_a_second_unless_it_must_be_now() -> None:
    recent = NOW - SECOND / 2
    assert not pacing.write_now(finished=False, retry_asked=False, written_at=recent, now=NOW)
    assert pacing.write_now(finished=False, retry_asked=False, written_at=NOW - SECOND, now=NOW)
    assert pacing.write_now(finished=True, retry_asked=False, written_at=recent, now=NOW)
    assert pacing.write_now(finished=False, retry_asked=True, written_at=recent, now=NOW)
    assert pacing.write_now(finished=False, retry_asked=False, written_at=None, now=NOW)


def test_pods_are_looked_at_first_and_then_every_30_seconds() -> None:
    assert pacing.pods_due(None, NOW)
    assert not pacing.pods_due(NOW - 29 * SECOND, NOW)
    assert pacing.pods_due(NOW - 30 * SECOND, NOW)


def test_a_running_workflow_is_advanced_again_at_the_first_thing_due() -> None:
    def next_at(**given: object) -> datetime:
        defaults: dict[str, object] = {"wake_at": None, "wants_outputs": False}
        return pacing.next_advance(now=NOW, **{**defaults, "unwritten_since": None, **given})  # type: ignore[arg-type]

    assert next_at() == NOW + pacing.POD_CHECK_INTERVAL
    assert next_at(wake_at=NOW + 5 * SECOND) == NOW + 5 * SECOND
    assert next_at(wants_outputs=True) == NOW
    # Applied results whose write waits: advanced when the write interval ends.
    assert next_at(unwritten_since=NOW - SECOND / 4) == NOW + 3 * SECOND / 4


def test_a_finished_workflow_is_deleted_when_its_ttl_has_passed_or_never() -> None:
    assert pacing.ttl_due(60, NOW) == NOW + 60 * SECOND
    assert pacing.ttl_due(None, NOW) is None
    assert pacing.ttl_due(60, None) is None


def test_progress_writes_stretch_with_the_workflows_running_and_ends_are_written_at_once() -> None:
    assert pacing.write_interval(1) == pacing.WRITE_INTERVAL
    assert pacing.write_interval(pacing.WRITES_PER_SECOND) == pacing.WRITE_INTERVAL
    assert pacing.write_interval(5 * pacing.WRITES_PER_SECOND).total_seconds() == 5
    assert pacing.write_interval(10**6) == pacing.MAX_WRITE_INTERVAL
    five = pacing.write_interval(5 * pacing.WRITES_PER_SECOND)
    recent = NOW - 2 * SECOND
    assert not pacing.write_now(
        finished=False, retry_asked=False, written_at=recent, now=NOW, interval=five
    )
    assert pacing.write_now(
        finished=True, retry_asked=False, written_at=recent, now=NOW, interval=five
    )


def after(**given: Any) -> pacing.Aftermath:
    facts: dict[str, Any] = {
        "finished": False, "succeeded": False, "wake_at": None, "wants_outputs": False,
        "own_pods": True, "cancel_sent": None, "checked_at": NOW, "written_at": NOW,
        "retry_asked": False, "retry_pending": False, "ttl_seconds": None, "finished_at": None,
        "now": NOW,
    }  # fmt: skip
    return pacing.after_step(**{**facts, **given})


def test_after_a_step_a_running_workflow_writes_on_its_interval_and_looks_again_then() -> None:
    soon = after(written_at=NOW - timedelta(milliseconds=300))
    assert (soon.write, soon.pods, soon.release, soon.forget, soon.delete) == (
        False, "leave", False, False, False,
    )  # fmt: skip
    assert soon.due == NOW + timedelta(milliseconds=700)  # its applied results' write
    due = after(written_at=NOW - timedelta(seconds=2), checked_at=NOW - timedelta(seconds=31))
    assert (due.write, due.pods) == (True, "ensure")
    assert due.due == NOW + pacing.POD_CHECK_INTERVAL
    assert after(retry_asked=True).write  # the annotation goes only after the write


def test_after_a_step_a_finished_workflow_lets_go_and_is_forgotten_deleted_or_kept() -> None:
    ended = after(finished=True, succeeded=True, finished_at=NOW)
    assert (ended.write, ended.pods, ended.release, ended.keep_outputs) == (
        True, "remove", True, False,
    )  # fmt: skip
    assert (ended.due, ended.forget, ended.delete) == (None, True, False)
    failed = after(finished=True, finished_at=NOW, ttl_seconds=60)
    assert (failed.keep_outputs, failed.due, failed.forget) == (
        True,
        NOW + timedelta(seconds=60),
        False,
    )
    expired = after(finished=True, finished_at=NOW - timedelta(seconds=61), ttl_seconds=60)
    assert expired.delete
    asked = after(finished=True, finished_at=NOW, retry_pending=True)
    assert not asked.forget  # a retry asked for meanwhile is carried out first


def test_after_a_terminate_the_own_pods_are_held_while_workers_learn_of_it() -> None:
    sent = NOW - timedelta(seconds=1)
    held = after(finished=True, finished_at=NOW, cancel_sent=sent)
    assert (held.pods, held.release, held.forget) == ("leave", False, False)
    assert held.due == sent + pacing.TERMINATE_HOLD
    shared = after(finished=True, finished_at=NOW, cancel_sent=sent, own_pods=False)
    assert (shared.pods, shared.release) == ("remove", True)  # a pool's workers stay anyway
    later = after(finished=True, finished_at=NOW, cancel_sent=NOW - pacing.TERMINATE_HOLD)
    assert (later.pods, later.release) == ("remove", True)


def test_an_ended_workflow_stops_only_the_steps_it_skipped_after_they_started() -> None:
    from treadle.api.workflows import WorkflowStatus

    status = WorkflowStatus.of(
        {
            "tasks": {
                "done": {"phase": "Succeeded", "attempts": 1},
                "cut": {"phase": "Skipped", "reason": "Deadline", "attempts": 1},
                "fan": {"phase": "Skipped", "reason": "Deadline", "items": 10},
                "never": {"phase": "Skipped", "reason": "Deadline"},
            }
        }
    )
    assert pacing.cut_short(["done", "cut", "fan", "never", "absent"], status) == ["cut", "fan"]
