"""Work brought back: a manual retry of dead letters (`revive`), the attempts in flight when
Redis lost its data (`requeue_in_flight`), and those no worker started (`fail_in_flight`)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, MutableMapping
from datetime import datetime, timedelta
from typing import Any

from treadle.api.workflows import Task, WorkflowSpec
from treadle.core import dags, patches, ranges, templating, timestamps
from treadle.core.messages import TaskMessage, TaskResult
from treadle.core.runs import IN_FLIGHT, Identity, OutputId
from treadle.core.scheduling import Run


class NothingToRetry(ValueError):
    """A manual retry named a task with nothing dead-lettered."""


def revive(
    spec: WorkflowSpec, status: Mapping[str, Any], target: str, *, now: datetime
) -> tuple[dict[str, Any], list[str]]:
    """A manual retry (`target` is a task name or "all"): the dead-lettered tasks and forEach
    children are due again at once with a fresh retry budget, the tasks skipped because of them
    are Pending again, their dead letters leave status, and a Failed workflow is Running again.

    Returns the new status and what was revived ("task" or "task[item]").  Raises
    NothingToRetry when the target has nothing dead-lettered.
    """
    revived_status = patches.copy_json(status)
    tasks: dict[str, dict[str, Any]] = revived_status.setdefault("tasks", {})
    by_name = {task.name: task for task in spec.tasks}
    if target != "all" and target not in by_name:
        raise NothingToRetry(f"workflow has no task {target!r}")
    names = [t.name for t in spec.tasks] if target == "all" else [target]
    letters = revived_status.get("deadLetters") or []
    revived: list[str] = []
    due = timestamps.text(now)
    for name in names:
        entry = tasks.get(name) or {}
        if by_name[name].for_each is None or "items" not in entry:
            if entry.get("phase") != "DeadLettered":
                continue
            entry.update(phase="Retrying", nextRetryAt=due, attemptBase=entry.get("attempts", 0))
            entry.pop("finishedAt", None)
            if by_name[name].for_each is not None:  # its list never rendered: render it again
                entry.update(phase="Pending")
                entry.pop("nextRetryAt", None)
            revived.append(name)
            continue
        dead = sorted(ranges.decode(entry.get("deadItems")))
        if not dead:
            continue
        attempts = ranges.decode_map(entry.get("itemAttempts"))
        base = ranges.decode_map(entry.get("itemAttemptBase"))
        retrying = ranges.decode_map(entry.get("retryAt"))
        for item in dead:
            spent = attempts.setdefault(item, "1")
            base[item] = spent
            retrying[item] = due
            revived.append(f"{name}[{item}]")
        entry.update(
            deadItems="",
            deadLettered=0,
            phase="Running",
            itemAttempts=ranges.encode_map(dict(attempts)),
            itemAttemptBase=ranges.encode_map(dict(base)),
            retryAt=ranges.encode_map(dict(retrying)),
        )
        entry.pop("finishedAt", None)
    if not revived:
        what = "nothing is" if target == "all" else f"task {target!r} is not"
        raise NothingToRetry(f"{what} dead-lettered")
    again = {label.split("[")[0] for label in revived}
    dag = dags.Dag.from_tasks([(t.name, t.depends_on) for t in spec.tasks])
    downstream = {d for name in again for d in dag.descendants(name)}
    for name in downstream:
        entry = tasks.get(name) or {}
        if entry.get("phase") == "Skipped":
            tasks[name] = {"phase": "Pending"}
    revived_status["deadLetters"] = [
        letter for letter in letters if letter.get("task") not in again
    ]
    standing = int(revived_status.get("deadLetterCount") or len(letters))
    revived_status["deadLetterCount"] = max(0, standing - len(revived))
    if revived_status.get("phase") == "Failed":
        revived_status["phase"] = "Running"
        revived_status.pop("finishedAt", None)
    return revived_status, revived


def requeue_in_flight(
    spec: WorkflowSpec,
    status: Mapping[str, Any],
    *,
    now: datetime,
    who: Identity,
    outputs: Mapping[OutputId, Any] | None = None,
    rendered: MutableMapping[str, tuple[str, list[Any]]] | None = None,
) -> list[TaskMessage]:
    """The attempts status says are in flight, to enqueue again after Redis lost its data
    (idempotency keys make a duplicate harmless when one survived).  An attempt whose
    templates no longer render (the outputs they read went with Redis) is left to its
    timeout."""
    run = Run(spec, status, now, who, random.Random(), outputs, rendered)
    again: list[TaskMessage] = []
    for task, item, attempt in _in_flight_attempts(spec, status):
        try:
            value = None if item is None else run.item_values(task)[item]
            again.append(run.message(task, item, attempt, run.render(task, value)))
        except templating.TemplateError:
            continue
    return again


def fail_in_flight(
    spec: WorkflowSpec, status: Mapping[str, Any], who: Identity, error: str
) -> list[TaskResult]:
    """Failures of every attempt status says is in flight, with `error`: what the operator
    reports when no worker could start to run them (they are retried like any failure; a
    worker that starts later skips those whose keys a retry already settled)."""
    workflow = f"{who.namespace}/{who.name}"
    run = status.get("runGeneration")
    return [
        TaskResult(who.uid, workflow, task.name, item, attempt, "failed", None, error, run=run)
        for task, item, attempt in _in_flight_attempts(spec, status)
    ]


def _in_flight_attempts(
    spec: WorkflowSpec, status: Mapping[str, Any]
) -> Iterator[tuple[Task, int | None, int]]:
    """(task, forEach child or None, attempt) of every attempt status says is in flight."""
    tasks = status.get("tasks") or {}
    for task in spec.tasks:
        entry = tasks.get(task.name) or {}
        if task.for_each is None:
            if entry.get("phase") in IN_FLIGHT:
                yield task, None, int(entry.get("attempts", 1))
            continue
        attempts = ranges.decode_map(entry.get("itemAttempts"))
        for item in sorted(ranges.decode(entry.get("runningItems"))):
            yield task, item, int(attempts.get(item, 1))


def start_overdue(
    *, in_flight: bool, ready_workers: int, waiting_since: datetime | None, now: datetime,
    timeout_seconds: int,
) -> bool:  # fmt: skip
    """Whether attempts waited too long for a worker: some are in flight, no worker pod is
    ready, and none has been since `waiting_since`, more than the timeout ago."""
    if not in_flight or ready_workers > 0 or waiting_since is None:
        return False
    return now - waiting_since >= timedelta(seconds=timeout_seconds)
