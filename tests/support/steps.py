"""Driving the workflow engine by hand in unit tests: specs, results, one advance."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from treadle.api.workflows import WorkflowSpec, WorkflowStatus
from treadle.core import engine
from treadle.core.messages import TaskMessage, TaskResult

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
WHO = engine.Identity(uid="u1", name="wf", namespace="ns", pool="wf-u1")


def spec(*tasks: dict[str, Any], **extra: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"tasks": list(tasks), **extra})


def cmd(name: str, *args: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": {"args": list(args) or ["true"]}, **extra}


def result_of(message: TaskMessage, outcome: Any, **fields: Any) -> TaskResult:
    """The result a worker reports for the attempt `message` carries."""
    who = (message.workflow_uid, message.workflow, message.task, message.item, message.attempt)
    return TaskResult(*who, outcome, **fields)


def ok(message: TaskMessage, output: Any = None) -> TaskResult:
    return result_of(message, "succeeded", output=output)


def failed(
    message: TaskMessage, error: str = "boom", details: dict[str, Any] | None = None
) -> TaskResult:
    return result_of(message, "failed", error=error, details=details or {})


STORED: dict[engine.OutputId, Any] = {}
"""What the workers stored of every output so far (the driver loads what templates need)."""


def step(
    workflow: WorkflowSpec,
    status: WorkflowStatus | dict[str, Any],
    results: Sequence[engine.Report] = (),
    now: datetime = T0,
) -> engine.Step:
    """One advance; it must leave the status it was given as it was (the engine edits its
    own working copy, shallow where it only replaces)."""
    for result in results:
        if isinstance(result, TaskResult) and result.outcome == "succeeded":
            STORED[(result.task, result.item)] = result.output
    typed = status if isinstance(status, WorkflowStatus) else WorkflowStatus.of(status)
    before = typed.wire()
    found = engine.advance(
        workflow,
        typed,
        list(results),
        now=now,
        who=WHO,
        generation=1,
        rng=random.Random(0),
        outputs=STORED,
    )
    assert typed.wire() == before, "advance changed the status it was given"
    return found
