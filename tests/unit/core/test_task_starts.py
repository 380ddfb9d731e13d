"""A task whose attempt runs on a worker is Running (issue #32: it showed Queued for its whole
run), told by the start the worker publishes on the result stream."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from support.steps import T0, cmd, failed, ok, spec, step
from treadle.core import timestamps
from treadle.core.messages import MessageError, TaskMessage, TaskStart, decode_report


def start_of(message: TaskMessage, worker: str = "pool-worker-0", at: float = 0.0) -> TaskStart:
    return TaskStart.of(message, worker, at or T0.timestamp() + 3)


def test_a_started_attempt_makes_its_task_running_on_its_worker_from_its_start() -> None:
    workflow = spec(cmd("slow"))
    first = step(workflow, {})
    assert first.wire["tasks"]["slow"]["phase"] == "Queued"
    running = step(workflow, first.status, [start_of(first.enqueue[0])])
    entry = running.wire["tasks"]["slow"]
    assert (entry["phase"], entry["worker"]) == ("Running", "pool-worker-0")
    assert entry["attemptStartedAt"] == timestamps.text(T0.replace(second=T0.second + 3))
    done = step(workflow, running.status, [ok(first.enqueue[0])])
    assert done.wire["tasks"]["slow"]["phase"] == "Succeeded"
    assert done.wire["tasks"]["slow"]["worker"] == "pool-worker-0"


def test_a_start_after_its_result_or_of_an_earlier_attempt_changes_nothing() -> None:
    workflow = spec(
        cmd("flaky", retry={"limit": 2, "backoff": {"durationSeconds": 1, "jitter": 0}})
    )
    first = step(workflow, {})
    done = step(workflow, first.status, [ok(first.enqueue[0])])
    late = step(workflow, done.status, [start_of(first.enqueue[0])])
    assert late.wire["tasks"]["flaky"]["phase"] == "Succeeded"

    again = step(workflow, {})
    retried = step(workflow, again.status, [failed(again.enqueue[0])])
    queued = step(workflow, retried.status, now=T0.replace(minute=T0.minute + 1))
    [second] = queued.enqueue
    assert second.attempt == 2
    straggler = step(workflow, queued.status, [start_of(again.enqueue[0], "old-worker")])
    entry = straggler.wire["tasks"]["flaky"]
    assert entry["phase"] == "Queued"
    assert "worker" not in entry


def test_a_short_attempt_told_only_by_its_result_records_its_worker_and_start() -> None:
    workflow = spec(cmd("quick"))
    first = step(workflow, {})
    result = dataclasses.replace(
        ok(first.enqueue[0]), worker="pool-worker-1", started_at=T0.timestamp() + 1
    )
    entry = step(workflow, first.status, [result]).wire["tasks"]["quick"]
    assert (entry["phase"], entry["worker"]) == ("Succeeded", "pool-worker-1")
    assert entry["attemptStartedAt"] == timestamps.text(T0.replace(second=T0.second + 1))


def test_a_start_round_trips_through_its_stream_fields() -> None:
    message = step(spec(cmd("slow")), {}).enqueue[0]
    start = start_of(message, at=datetime(2026, 12, 7, tzinfo=UTC).timestamp())
    assert decode_report(start.encode()) == start


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"worker": "w" * 254}, "worker: a short string"),
        ({"worker": ""}, "worker: a short string"),
        ({"started_at": "soon"}, "started_at: a finite number"),
        ({"attempt": 0}, "attempt: a positive integer"),
        ({"extra": 1}, "its fields are not a start's"),
    ],
)
def test_a_forged_start_is_refused_naming_why(change: dict[str, object], problem: str) -> None:
    message = step(spec(cmd("slow")), {}).enqueue[0]
    fields = start_of(message).encode()
    body = {**json.loads(fields["started"]), **change}
    with pytest.raises(MessageError, match=problem):
        decode_report({**fields, "started": json.dumps(body)})


def test_a_start_whose_key_is_not_its_bodys_is_refused() -> None:
    message = step(spec(cmd("slow")), {}).enqueue[0]
    fields = start_of(message).encode()
    with pytest.raises(MessageError, match="key does not match"):
        decode_report({**fields, "key": "other/slow/-"})


def test_an_attempt_told_waiting_stays_queued_and_says_why_until_it_begins() -> None:
    """Issue #34: a job step's Job held by a queue (or its pod not yet pulled) says so."""
    workflow = spec(cmd("train"))
    first = step(workflow, {})
    held = dataclasses.replace(
        start_of(first.enqueue[0]), waiting="waiting for admission by queue 'research'"
    )
    told = decode_report(held.encode())
    assert told == held
    waiting = step(workflow, first.status, [told])
    entry = waiting.wire["tasks"]["train"]
    assert (entry["phase"], entry["waiting"]) == ("Queued", held.waiting)
    began = step(workflow, waiting.status, [start_of(first.enqueue[0])])
    entry = began.wire["tasks"]["train"]
    assert entry["phase"] == "Running"
    assert "waiting" not in entry


def test_a_start_from_a_worker_has_the_fields_it_always_had() -> None:
    workflow = spec(cmd("slow"))
    first = step(workflow, {})
    body = json.loads(start_of(first.enqueue[0]).encode()["started"])
    assert "waiting" not in body


def test_a_running_attempt_told_waiting_again_is_queued_again_and_runs_on() -> None:
    """A queue (Kueue) that preempts a job step suspends its Job: it waits again."""
    workflow = spec(cmd("train"))
    first = step(workflow, {})
    running = step(workflow, first.status, [start_of(first.enqueue[0])])
    held = dataclasses.replace(start_of(first.enqueue[0]), waiting="waiting for admission")
    again = step(workflow, running.status, [held])
    assert (again.wire["tasks"]["train"]["phase"], again.wire["tasks"]["train"]["waiting"]) == (
        "Queued",
        "waiting for admission",
    )
    resumed = step(workflow, again.status, [start_of(first.enqueue[0], worker="pod-2")])
    assert resumed.wire["tasks"]["train"]["phase"] == "Running"
    done = step(workflow, resumed.status, [ok(first.enqueue[0])])
    assert done.wire["tasks"]["train"]["phase"] == "Succeeded"
