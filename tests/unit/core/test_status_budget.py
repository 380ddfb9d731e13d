"""Status stays small whatever the spec (SPEC, Limits and bad input: under 256 KiB, children's
outputs never inline, inline outputs share a 64 KiB budget), and stored outputs are asked for
only when a template still to render reads them (#13, problem 5)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from treadle.api.workflows import WorkflowSpec, WorkflowStatus
from treadle.core import engine
from treadle.core.messages import TaskMessage, TaskResult
from treadle.services import keys

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
UID = "0f8c6d3e-2a41-4c8e-9a51-7d2b9e4c1a00"
WHO = engine.Identity(uid=UID, name="wf", namespace="ns", pool="p")
FOUR_KIB = "x" * 4000


def spec(*tasks: dict[str, Any], **extra: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"tasks": list(tasks), **extra})


def cmd(name: str, *args: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": {"args": list(args) or ["true"]}, **extra}


def stored(message: TaskMessage, output: Any) -> TaskResult:
    """A success as the worker reports it: the output stored, a copy only when small."""
    result = TaskResult(
        message.workflow_uid, message.workflow, message.task, message.item, message.attempt,
        "succeeded", output, run=message.run,
    )  # fmt: skip
    small = len(json.dumps(output)) <= 4096 and message.item is None
    uid = message.workflow_uid
    key = keys.output_key(f"wf-{uid}", uid, message.task, message.item, message.run)
    return result.stored_at(key, keep_copy=small)


def failed(message: TaskMessage, error: str) -> TaskResult:
    return TaskResult(
        message.workflow_uid, message.workflow, message.task, message.item, message.attempt,
        "failed", error=error, run=message.run,
    )  # fmt: skip


class Run:
    """Drives one workflow to its end as the driver does: outputs loaded only as asked."""

    def __init__(self, workflow: WorkflowSpec) -> None:
        self.workflow = workflow
        self.store: dict[engine.OutputId, Any] = {}
        self.loaded: dict[engine.OutputId, Any] = {}
        self.rendered: dict[str, tuple[str, list[Any]]] = {}
        self.status = WorkflowStatus(run_generation=1)
        self.largest = 0
        self.loads: list[str] = []

    def advance(self, results: list[TaskResult], now: datetime = T0) -> engine.Step:
        needed = engine.needed_outputs(self.workflow, self.status)
        self.loaded = {}
        for name, items in needed.items():
            self.loads.append(name)
            for item in [None] if items is None else range(items):
                self.loaded[(name, item)] = self.store[(name, item)]
        step = engine.advance(
            self.workflow, self.status, results, now=now, who=WHO, generation=1,
            rng=random.Random(0), outputs=self.loaded, rendered=self.rendered,
        )  # fmt: skip
        self.status = step.status
        self.largest = max(self.largest, engine.status_size(step.status))
        return step

    def to_the_end(self, output: Any, limit: int = 100_000) -> list[TaskMessage]:
        """Runs every attempt to success with `output(message)`; returns the attempts."""
        ran: list[TaskMessage] = []
        step = self.advance([])
        for _ in range(limit):
            if step.finished:
                return ran
            results = []
            for message in step.enqueue:
                value = output(message)
                self.store[(message.task, message.item)] = value
                results.append(stored(message, value))
            ran += step.enqueue
            step = self.advance(results)
        raise AssertionError("did not finish")


def test_500_tasks_with_4_kib_outputs_keep_status_under_256_kib_and_templates_see_them() -> None:
    tasks = [cmd(f"task-{n:03d}-{'n' * 50}") for n in range(499)]
    names = [task["name"] for task in tasks]
    reader = cmd("reader", "echo", "{{ tasks['" + names[-1] + "'].output | length }}")
    run = Run(spec(*tasks, {**reader, "dependsOn": names}, concurrency=1000))
    ran = run.to_the_end(lambda m: FOUR_KIB)
    wire = run.status.wire()
    assert wire["phase"] == "Succeeded"
    assert run.largest < engine.STATUS_LIMIT_BYTES
    inline = [e for e in wire["tasks"].values() if e.get("output") is not None]
    assert 0 < sum(len(json.dumps(e["output"])) for e in inline) <= engine.INLINE_BUDGET_BYTES
    assert sum("outputRef" in e for e in wire["tasks"].values()) >= 480
    # The reader read a referenced output, loaded for it and for nothing else.
    assert ran[-1].action["command"]["args"] == ["echo", "4000"]
    assert set(run.loads) == {names[-1]}


def test_10000_children_with_4_kib_outputs_stay_out_of_status_and_reach_the_fan_in() -> None:
    workflow = spec(
        cmd("each", "{{ item }}", forEach="{{ range(10000) | list }}"),
        cmd("count", "{{ tasks.each.outputs | length }}", dependsOn=["each"]),
        concurrency=1000,
    )
    run = Run(workflow)
    ran = run.to_the_end(lambda m: FOUR_KIB[:-4] + str(m.item).zfill(4))
    assert run.status.wire()["phase"] == "Succeeded"
    assert run.largest < 8 * 1024  # far below: counts and index ranges
    each = run.status.wire()["tasks"]["each"]
    assert "itemValues" not in each
    assert "outputs" not in each
    assert ran[-1].action["command"]["args"] == ["10000"]


def test_a_task_reading_an_output_not_loaded_waits_for_it_then_runs() -> None:
    workflow = spec(cmd("big"), cmd("use", "{{ tasks.big.output.n }}", dependsOn=["big"]))
    first = engine.advance(workflow, {"runGeneration": 1}, [], now=T0, who=WHO)
    result = stored(first.enqueue[0], {"n": 7, "pad": FOUR_KIB * 2})
    waiting = engine.advance(workflow, first.status, [result], now=T0, who=WHO)
    assert waiting.wants_outputs
    assert waiting.enqueue == []
    assert waiting.wire["tasks"]["use"]["phase"] == "Pending"
    assert engine.needed_outputs(workflow, waiting.status) == {"big": None}
    given = {("big", None): {"n": 7, "pad": FOUR_KIB * 2}}
    going = engine.advance(workflow, waiting.status, [], now=T0, who=WHO, outputs=given)
    assert [m.action["command"]["args"] for m in going.enqueue] == [["7"]]
    # An output that cannot be had (lost, too large to load) fails its reader, naming it.
    lost = engine.advance(
        workflow, waiting.status, [], now=T0, who=WHO, unavailable=frozenset({"big"})
    )
    assert lost.wire["tasks"]["use"]["phase"] == "DeadLettered"
    assert "output" in lost.wire["tasks"]["use"]["error"]


def test_a_small_output_beyond_the_inline_budget_still_reaches_its_reader_at_once() -> None:
    """The copy that came with the result serves its successor in the same advance."""
    fill = [cmd(f"fill-{n}") for n in range(16)]
    workflow = spec(
        *fill, cmd("last"), cmd("use", "{{ tasks.last.output | length }}", dependsOn=["last"]),
        concurrency=100,
    )  # fmt: skip
    first = engine.advance(workflow, {"runGeneration": 1}, [], now=T0, who=WHO)
    results = [stored(m, FOUR_KIB) for m in first.enqueue]
    second = engine.advance(workflow, first.status, results, now=T0, who=WHO)
    assert "outputRef" in second.wire["tasks"]["last"]  # the budget ran out before it
    assert [m.action["command"]["args"] for m in second.enqueue] == [["4000"]]


def test_a_for_each_renders_its_items_again_when_the_operator_kept_none() -> None:
    workflow = spec(cmd("each", "{{ item.id }}", forEach="{{ params.rows }}"), concurrency=1)
    params = {"rows": [{"id": "a"}, {"id": "b"}]}
    workflow = workflow.model_copy(update={"params": params})
    first = engine.advance(workflow, {"runGeneration": 1}, [], now=T0, who=WHO)
    assert "itemValues" not in first.wire["tasks"]["each"]
    # A restarted operator (nothing rendered kept) launches the next child the same way.
    second = engine.advance(
        workflow, first.status, [stored(first.enqueue[0], 1)], now=T0, who=WHO, rendered={}
    )
    assert [m.action["command"]["args"] for m in second.enqueue] == [["b"]]
    # Items that render otherwise than when the task started are refused, not run.
    changed = workflow.model_copy(update={"params": {"rows": [{"id": "z"}, {"id": "y"}]}})
    other = engine.advance(
        changed, first.status, [stored(first.enqueue[0], 1)], now=T0, who=WHO, rendered={}
    )
    assert other.enqueue == []
    assert "other items" in other.wire["deadLetters"][0]["error"]


def test_10000_failing_children_keep_retry_state_grouped_and_dead_letters_capped() -> None:
    retry = {"limit": 1, "backoff": {"durationSeconds": 30, "jitter": 0}}
    workflow = spec(
        cmd("each", "{{ item }}", forEach="{{ range(10000) | list }}", retry=retry),
        concurrency=1000,
    )
    now, largest = T0, 0
    step = engine.advance(workflow, {"runGeneration": 1}, [], now=now, who=WHO)
    error = "503 from https://api.example/v1/rows " + "x" * 3000
    for _ in range(200):
        if step.finished:
            break
        results = [failed(m, error) for m in step.enqueue]
        now += timedelta(seconds=31)
        step = engine.advance(workflow, step.status, results, now=now, who=WHO)
        largest = max(largest, engine.status_size(step.status))
    status = step.status
    assert status.phase == "Failed"
    assert status.dead_letter_count == 10_000
    assert len(status.dead_letters) == engine.DEAD_LETTERS_KEPT
    assert all(len(letter.error) <= engine.ERROR_CHARS for letter in status.dead_letters)
    assert largest < 64 * 1024
    # A manual retry revives all 10,000 with a fresh budget, still in a few bytes.
    revived, what = engine.revive(workflow, status, "each", now=now)
    assert len(what) == 10_000
    assert revived.dead_letter_count == 0
    assert engine.status_size(revived) < 8 * 1024
    again = engine.advance(workflow, revived, [], now=now, who=WHO)
    assert len(again.enqueue) == 1000
    assert {m.attempt for m in again.enqueue} == {3}


def test_a_status_that_cannot_fit_fails_the_workflow_saying_so() -> None:
    """A last resort no valid spec should reach; it must end the workflow, never stall it."""
    workflow = spec(*[cmd(f"t{n}") for n in range(3)])
    huge = {"runGeneration": 1, "tasks": {"t0": {"phase": "Pending", "itemsDigest": "x" * 300_000}}}
    step = engine.advance(workflow, huge, [], now=T0, who=WHO)
    assert step.wire["phase"] == "Failed"
    assert step.enqueue == []
    assert "256 KiB" in step.wire["message"]
