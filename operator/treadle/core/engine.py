"""The workflow engine: a pure state machine from (spec, status, results, now) to the next
status and the attempts to enqueue.

Status is the record of truth: everything the engine needs to go on lives in it, so an operator
that restarts (or a Redis that lost its data) resumes from status alone.  For a forEach task the
children are kept as compact index sets (`runningItems`, `doneItems`, `deadItems`) plus the
attempts and retry times of children that failed, grouped by value (`{"3": "0-99"}`), so a
10,000-child fan-out stays small whatever happens to it.

Status stays under STATUS_LIMIT_BYTES (SPEC, Limits and bad input): outputs live in Redis (the
worker stores every one); status inlines a single task's output only while the workflow's
inline outputs fit INLINE_BUDGET_BYTES, never a forEach child's; errors are cut to
ERROR_CHARS, and only the newest DEAD_LETTERS_KEPT dead letters are listed (`deadLetterCount`
counts them all).  A forEach task's items are not kept either: its template is rendered again
when a child needs its item (templates are deterministic), checked against the digest taken
when it first rendered (`itemsDigest`), and the caller keeps the rendered list between calls.

Rules:
- a task is ready when every task it depends on Succeeded; a task downstream of a DeadLettered
  or Skipped task is Skipped;
- at most `spec.concurrency` attempts are in flight (queued or running) at once; retries that
  are due go first, then tasks in DAG order, then forEach children in item order;
- a failed attempt is retried after an exponential backoff with jitter until `retry.limit`
  retries were spent, then the task (or child) is dead-lettered; a forEach task with a
  dead-lettered child ends DeadLettered once its other children finished;
- a template that cannot be rendered dead-letters its task at once (retrying cannot help);
- the workflow Succeeds when every task Succeeded, Fails when nothing else can run and some
  task was dead-lettered or skipped, or when `activeDeadlineSeconds` passed.

This module is the engine's face (`advance` and what callers need); its parts: `runs` (one
call's state over status, the results it applies, the phase it concludes), `scheduling` (what
it launches), `retries` (manual retry, in-flight attempts brought back), `reads` (the stored
outputs templates read) and `budget` (what status may hold).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from treadle.api.workflows import ENDED_PHASES, WorkflowSpec, WorkflowStatus
from treadle.core import actions, notices
from treadle.core.budget import (
    DEAD_LETTERS_KEPT,
    ERROR_CHARS,
    INLINE_BUDGET_BYTES,
    OUTPUT_LIMIT_BYTES,
    STATUS_LIMIT_BYTES,
    fit,
    status_size,
)
from treadle.core.identity import Identity, dedicated_pool
from treadle.core.messages import Report, TaskMessage, TaskResult, TaskStart
from treadle.core.reads import needed_outputs
from treadle.core.retries import (
    ManualRetry,
    NothingToRetry,
    fail_in_flight,
    manual_retry,
    requeue_in_flight,
    revive,
    start_overdue,
)
from treadle.core.runstate import FINISHED, IN_FLIGHT, OutputId
from treadle.core.runvalues import items_digest
from treadle.core.scheduling import DEFAULT_TIMEOUT_SECONDS, MAX_FOR_EACH_ITEMS, Run

__all__ = [
    "DEAD_LETTERS_KEPT",
    "DEFAULT_TIMEOUT_SECONDS",
    "ERROR_CHARS",
    "FINISHED",
    "INLINE_BUDGET_BYTES",
    "IN_FLIGHT",
    "MAX_FOR_EACH_ITEMS",
    "OUTPUT_LIMIT_BYTES",
    "STATUS_LIMIT_BYTES",
    "Identity",
    "ManualRetry",
    "NothingToRetry",
    "OutputId",
    "Report",
    "Step",
    "TaskResult",
    "TaskStart",
    "advance",
    "dedicated_pool",
    "fail_in_flight",
    "fit",
    "items_digest",
    "manual_retry",
    "needed_outputs",
    "requeue_in_flight",
    "revive",
    "secret_refs",
    "start_overdue",
    "status_size",
]


@dataclass
class Step:
    status: WorkflowStatus
    enqueue: list[TaskMessage] = field(default_factory=list)
    wake_at: datetime | None = None
    """When the engine should be called again without new results (a retry or the deadline)."""
    wants_outputs: bool = False
    """Some task is ready but reads stored outputs that were not given: call again with them
    (`needed_outputs` names them now)."""
    notices: list[notices.Notice] = field(default_factory=list)
    """The Events this step deserves (dead letters, a change of phase)."""
    dead_lettered: int = 0
    """Tasks and children dead-lettered in this step."""
    finished_now: bool = False
    """The workflow ended in this step (it was not Succeeded or Failed before)."""

    @property
    def finished(self) -> bool:
        return self.status.phase in ENDED_PHASES

    @property
    def wire(self) -> dict[str, Any]:
        """The status as written (camelCase JSON)."""
        return self.status.wire()


def secret_refs(spec: WorkflowSpec) -> list[tuple[str, str]]:
    """The (Secret, key) pairs the workflow's HTTP headers read; worker pods get them as env."""
    return sorted({ref for task in spec.all_tasks for ref in actions.secret_keys(task)})


def advance(
    spec: WorkflowSpec,
    status: WorkflowStatus | Mapping[str, Any],
    results: Sequence[Report],
    *,
    now: datetime,
    who: Identity,
    generation: int | None = None,
    rng: random.Random | None = None,
    outputs: Mapping[OutputId, Any] | None = None,
    rendered: MutableMapping[str, tuple[str, list[Any]]] | None = None,
    unavailable: frozenset[str] = frozenset(),
) -> Step:
    """The next status and the attempts to enqueue, given the results that arrived.

    `outputs` holds the stored outputs templates may read, by (task, item): `needed_outputs`
    says which; a task reading one not given waits (Step.wants_outputs) unless it is in
    `unavailable` (lost, or too large to load), when its templates fail.  `rendered` keeps
    forEach tasks' rendered items between calls (the engine fills it; an empty one only costs
    renderings).  `status` is typed, or as the API server holds it (then parsed)."""
    typed = status if isinstance(status, WorkflowStatus) else WorkflowStatus.of(status)
    run = Run(spec, typed, now, who, rng or random.Random(), outputs, rendered, unavailable)
    if run.status.phase not in ENDED_PHASES:
        for result in results:
            run.apply(result)
        run.settle()
        run.shut()
        if not spec.suspend or spec.shutdown is not None:  # a stopped run's exit tasks run
            run.schedule()
            run.settle()
            run.shut()
    run.conclude(generation)
    run.flush()
    if not fit(run.status):
        run.enqueue = []
        run.status.phase = "Failed"
        run.status.message = (
            f"status would exceed {STATUS_LIMIT_BYTES // 1024} KiB: too many tasks, "
            "errors or dead letters to record"
        )
        run.skip_unfinished("StatusLimit")
        run.conclude(generation)
        fit(run.status, last_resort=True)
    return Step(
        run.status,
        run.enqueue,
        now if run.render_paused else run.wake_at(),
        wants_outputs=run.deferred,
        notices=notices.step_notices(run.phase_before, run.status, run.new_letters),
        dead_lettered=len(run.new_letters),
        finished_now=run.phase_before not in ENDED_PHASES and run.status.phase in ENDED_PHASES,
    )
