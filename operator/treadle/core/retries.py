"""Work brought back: a manual retry of dead letters (`revive`), the attempts in flight when
Redis lost its data (`requeue_in_flight`), and those no worker started (`fail_in_flight`)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from treadle.api.workflows import Task, TaskStatus, WorkflowSpec, WorkflowStatus
from treadle.core import actions, dags, ranges, templating, timestamps
from treadle.core.identity import Identity
from treadle.core.messages import TaskMessage, TaskResult
from treadle.core.notices import Notice
from treadle.core.runstate import IN_FLIGHT, OutputId
from treadle.core.scheduling import Run


class NothingToRetry(ValueError):
    """A manual retry named a task with nothing dead-lettered."""


def revive(
    spec: WorkflowSpec, status: WorkflowStatus, target: str, *, now: datetime
) -> tuple[WorkflowStatus, list[str]]:
    """A manual retry (`target` is a task name or "all"): the dead-lettered tasks and forEach
    children are due again at once with a fresh retry budget, the tasks skipped because of them
    are Pending again, their dead letters leave status, and a Failed workflow is Running again.

    Returns the new status and what was revived ("task" or "task[item]").  Raises
    NothingToRetry when the target has nothing dead-lettered.
    """
    revived_status = status.working_copy()
    tasks = revived_status.tasks
    by_name = {task.name: task for task in spec.tasks}
    if target != "all" and target not in by_name:
        raise NothingToRetry(f"workflow has no task {target!r}")
    names = [t.name for t in spec.tasks] if target == "all" else [target]
    revived: list[str] = []
    due = timestamps.text(now)
    for name in names:
        entry = tasks.get(name)
        if entry is None:
            continue
        if by_name[name].for_each is None or entry.items is None:
            if entry.phase != "DeadLettered":
                continue
            entry.phase, entry.next_retry_at = "Retrying", due
            entry.attempt_base, entry.finished_at = entry.attempts or 0, None
            if by_name[name].for_each is not None:  # its list never rendered: render it again
                entry.phase, entry.next_retry_at = "Pending", None
            revived.append(name)
            continue
        dead = sorted(ranges.decode(entry.dead_items))
        if not dead:
            continue
        attempts = ranges.decode_map(entry.item_attempts)
        base = ranges.decode_map(entry.item_attempt_base)
        retrying = ranges.decode_map(entry.retry_at)
        for item in dead:
            spent = attempts.setdefault(item, "1")
            base[item] = spent
            retrying[item] = due
            revived.append(f"{name}[{item}]")
        entry.dead_items, entry.dead_lettered, entry.phase = "", 0, "Running"
        entry.item_attempts = ranges.encode_map(dict(attempts))
        entry.item_attempt_base = ranges.encode_map(dict(base))
        entry.retry_at = ranges.encode_map(dict(retrying))
        entry.finished_at = None
    if not revived:
        what = "nothing is" if target == "all" else f"task {target!r} is not"
        raise NothingToRetry(f"{what} dead-lettered")
    again = {label.split("[")[0] for label in revived}
    dag = dags.Dag.from_tasks([(t.name, t.depends_on) for t in spec.tasks])
    downstream = {d for name in again for d in dag.descendants(name)}
    for name in downstream:
        skipped = tasks.get(name)
        if (
            skipped is not None
            and skipped.phase == "Skipped"
            and skipped.reason != "ConditionFalse"
        ):
            tasks[name] = TaskStatus(phase="Pending")
    for task in spec.on_exit:  # they run again once the DAG has ended again
        tasks[task.name] = TaskStatus(phase="Pending")
    letters = status.dead_letters
    revived_status.dead_letters = [letter for letter in letters if letter.task not in again]
    standing = status.dead_letter_count or len(letters)
    revived_status.dead_letter_count = max(0, standing - len(revived))
    if revived_status.phase == "Failed":
        revived_status.phase, revived_status.finished_at = "Running", None
    return revived_status, revived


@dataclass(frozen=True)
class ManualRetry:
    status: WorkflowStatus
    """The status to go on from: revived, or as it was when the retry was refused."""
    notice: Notice
    """Retried (what was re-queued) or RetryRefused (why not)."""
    revived: list[str]


def manual_retry(
    spec: WorkflowSpec, status: WorkflowStatus, target: str, *, now: datetime
) -> ManualRetry:
    """A `treadle.dev/retry` request carried out (`revive`), or refused with the reason."""
    try:
        revived, what = revive(spec, status, target, now=now)
    except NothingToRetry as refusal:
        return ManualRetry(status, Notice("Warning", "RetryRefused", str(refusal)), [])
    shown = ", ".join(what[:10]) + (f" and {len(what) - 10} more" if len(what) > 10 else "")
    return ManualRetry(revived, Notice("Normal", "Retried", f"re-queued {shown}"), what)


def requeue_in_flight(
    spec: WorkflowSpec,
    status: WorkflowStatus,
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
    spec: WorkflowSpec,
    status: WorkflowStatus,
    who: Identity,
    error: str,
    *,
    workers_only: bool = False,
) -> list[TaskResult]:
    """Failures of every attempt status says is in flight, with `error`: what the operator
    reports when no worker could start to run them (they are retried like any failure; a
    worker that starts later skips those whose keys a retry already settled).  `workers_only`
    leaves out the attempts that run in Jobs of their own (no worker runs them)."""
    workflow = f"{who.namespace}/{who.name}"
    run = status.run_generation
    return [
        TaskResult(who.uid, workflow, task.name, item, attempt, "failed", None, error, run=run)
        for task, item, attempt in _in_flight_attempts(spec, status)
        if not (workers_only and actions.own_pod(task))
    ]


def _in_flight_attempts(
    spec: WorkflowSpec, status: WorkflowStatus
) -> Iterator[tuple[Task, int | None, int]]:
    """(task, forEach child or None, attempt) of every attempt status says is in flight."""
    for task in spec.all_tasks:
        entry = status.tasks.get(task.name)
        if entry is None:
            continue
        if task.for_each is None:
            if entry.phase in IN_FLIGHT:
                yield task, None, entry.attempts or 1
            continue
        attempts = ranges.decode_map(entry.item_attempts)
        for item in sorted(ranges.decode(entry.running_items)):
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
