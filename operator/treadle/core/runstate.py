"""One call of the workflow engine: its working state over a copy of status (typed, in the
CRD's own models: treadle.api.workflows), the results it applies, and the phases it concludes.
Scheduling (what to launch) builds on it in treadle.core.scheduling; treadle.core.engine is the
entry point."""

from __future__ import annotations

import random
from collections.abc import Mapping, MutableMapping
from datetime import datetime, timedelta
from typing import Any, Literal

from treadle.api import workflows
from treadle.api.workflows import (
    DeadLetter,
    Task,
    TaskStatus,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowStatus,
)
from treadle.core import backoff, budget, causes, conditions, dags, ranges, timestamps
from treadle.core.identity import Identity
from treadle.core.messages import Report, TaskMessage, TaskResult, TaskStart
from treadle.core.runvalues import due_text, moment_of, settings_of

FINISHED = ("Succeeded", "DeadLettered", "Skipped")
IN_FLIGHT = ("Queued", "Running")
OutputId = tuple[str, int | None]
"""A stored output: (task, forEach child index or None)."""


ItemSet = Literal["running_items", "done_items", "dead_items"]
"""A forEach task's index sets in status (compact ranges: "0-7,9")."""
ItemMap = Literal["item_attempts", "retry_at", "item_attempt_base"]
"""A forEach task's per-child values in status (index ranges by value)."""


class RunState:
    """One call of the engine: mutable working state over a working copy of status."""

    def __init__(
        self,
        spec: WorkflowSpec,
        status: WorkflowStatus,
        now: datetime,
        who: Identity,
        rng: random.Random,
        outputs: Mapping[OutputId, Any] | None = None,
        rendered: MutableMapping[str, tuple[str, list[Any]]] | None = None,
        unavailable: frozenset[str] = frozenset(),
    ) -> None:
        self.spec, self.now, self.who, self.rng = spec, now, who, rng
        self.stored_outputs = outputs or {}
        self.unavailable = unavailable
        """Tasks whose stored outputs cannot be had: templates reading them fail."""
        self.missing: set[str] = set()
        """Tasks whose stored outputs were not given (and may be): readers wait for them."""
        self.fresh: dict[OutputId, Any] = {}
        """Copies of outputs that arrived with their results but went to a reference."""
        self.deferred = False
        self.rendered: MutableMapping[str, tuple[str, list[Any]]] = (
            {} if rendered is None else rendered
        )
        self.status = status.working_copy()
        self.phase_before = self.status.phase
        self.new_letters: list[DeadLetter] = []
        self.run_generation = self.status.run_generation
        self.tasks = self.status.tasks
        self.all = spec.all_tasks
        """The DAG's tasks, then the exit tasks (spec.onExit)."""
        self.exits = frozenset(task.name for task in spec.on_exit)
        for task in self.all:
            if task.name not in self.tasks:
                self.tasks[task.name] = TaskStatus(phase="Pending")
        self.by_name = {task.name: task for task in self.all}
        self.dag = dags.Dag.from_tasks([(t.name, t.depends_on) for t in self.all])
        self.enqueue: list[TaskMessage] = []
        self._sets: dict[tuple[str, ItemSet], set[int]] = {}
        self._maps: dict[tuple[str, ItemMap], dict[int, str]] = {}
        self._inline_used: int | None = None
        self._base_context: dict[str, Any] | None = None

    def items(self, name: str, key: ItemSet) -> set[int]:
        """A forEach task's index set, decoded once per engine call and written back by
        `flush`: a pass applying thousands of results must not decode and encode the sets
        once per result."""
        if (name, key) not in self._sets:
            self._sets[(name, key)] = ranges.decode(getattr(self.tasks[name], key))
        return self._sets[(name, key)]

    def item_map(self, name: str, key: ItemMap) -> dict[int, str]:
        """A forEach task's per-child values, decoded once per engine call like `items`;
        values are strings (attempts as digits)."""
        if (name, key) not in self._maps:
            self._maps[(name, key)] = ranges.decode_map(getattr(self.tasks[name], key))
        return self._maps[(name, key)]

    def flush(self) -> None:
        for (name, set_key), found in self._sets.items():
            entry = self.tasks[name]
            if getattr(entry, set_key) is not None or found:
                setattr(entry, set_key, ranges.encode(found))
            # The counts follow the sets (kept here, not per result: a pass may apply 20,000).
            if set_key == "done_items":
                entry.succeeded = len(found)
            elif set_key == "dead_items":
                entry.dead_lettered = len(found)
        for (name, map_key), values in self._maps.items():
            setattr(self.tasks[name], map_key, ranges.encode_map(dict(values)) or None)
        self._sets, self._maps = {}, {}

    def inline_left(self) -> int:
        if self._inline_used is None:
            self._inline_used = sum(
                budget.json_size(entry.output)
                for entry in self.tasks.values()
                if entry.output is not None
            )
        return budget.INLINE_BUDGET_BYTES - self._inline_used

    def keep_output(self, entry: TaskStatus, result: TaskResult) -> None:
        """A single task's output: inline while the workflow's inline budget lasts, else the
        reference to its stored copy (a copy that came with the result still serves this
        call's templates)."""
        entry.output = entry.output_ref = None
        has_copy = result.output_ref is None or result.output is not None
        size = budget.json_size(result.output) if has_copy else 0
        if result.output_ref is not None and (not has_copy or size > self.inline_left()):
            entry.output_ref = result.output_ref
            if has_copy:
                self.fresh[(result.task, result.item)] = result.output
            return
        # Inline: within the budget, or from a worker that stored nothing (cut when too large).
        entry.output = result.output
        if size > budget.OUTPUT_LIMIT_BYTES:
            entry.output = {"truncated": True, "bytes": size}
            size = budget.json_size(entry.output)
        used = budget.INLINE_BUDGET_BYTES - self.inline_left()
        self._inline_used = used + size

    # results ---------------------------------------------------------------------------------

    def apply(self, report: Report) -> None:
        if isinstance(report, TaskStart):
            self.began(report)
            return
        result = report
        task = self.by_name.get(result.task)
        entry = self.tasks.get(result.task)
        if task is None or entry is None or result.run != self.run_generation:
            return  # not this run's (an earlier run of a spec that changed)
        self._base_context = None
        if task.for_each is None:
            if result.outcome == "succeeded" and entry.phase in (*IN_FLIGHT, "Retrying"):
                # Any attempt's success counts: a late success of an earlier attempt, after a
                # retry was queued, is the task's success (the retry then finds it recorded).
                entry.next_retry_at = None
            elif entry.phase not in IN_FLIGHT or entry.attempts != result.attempt:
                return  # a duplicate or a straggler of an earlier attempt
            entry.log_ref, entry.waiting = result.log_ref, None
            if result.worker is not None and entry.attempts == result.attempt:
                entry.worker = result.worker
                entry.attempt_started_at = entry.attempt_started_at or moment_of(result.started_at)
            if result.outcome == "succeeded":
                entry.phase, entry.finished_at = "Succeeded", timestamps.text(self.now)
                self.keep_output(entry, result)
                entry.error = None
            else:
                self._failed(task, entry, None, result)
            return
        item = result.item
        if item is None or entry.items is None:
            return
        running = self.items(task.name, "running_items")
        attempts = self.item_map(task.name, "item_attempts")
        retrying = self.item_map(task.name, "retry_at")
        late_success = result.outcome == "succeeded" and (item in running or item in retrying)
        if not late_success and (
            item not in running or int(attempts.get(item, 1)) != result.attempt
        ):
            return
        running.discard(item)
        retrying.pop(item, None)
        if result.outcome == "succeeded":
            # A child's output is never inline: it is read from its stored copy when a
            # template needs it (`outputs` given to `advance`).
            self.items(task.name, "done_items").add(item)
            attempts.pop(item, None)
            self.item_map(task.name, "item_attempt_base").pop(item, None)
        else:
            entry.failed = (entry.failed or 0) + 1
            self._failed(task, entry, item, result)

    def began(self, start: TaskStart) -> None:
        """A worker began the attempt: a queued task is Running, on that worker, from then (a
        forEach task is Running already; its children are not told apart)."""
        task = self.by_name.get(start.task)
        entry = self.tasks.get(start.task)
        if task is None or entry is None or start.run != self.run_generation:
            return
        if task.for_each is not None or entry.attempts != start.attempt:
            return  # a straggler of an earlier attempt
        if start.waiting is not None and entry.phase in ("Queued", "Running"):
            # Not begun yet, or stopped to wait again (a queue preempted its Job).
            entry.phase, entry.waiting = "Queued", start.waiting
            return
        if entry.phase != "Queued":
            return  # ended already
        entry.phase, entry.worker, entry.waiting = "Running", start.worker, None
        entry.attempt_started_at = moment_of(start.started_at)

    def _failed(self, task: Task, entry: TaskStatus, item: int | None, result: TaskResult) -> None:
        """A failed attempt: retried after its backoff while `retry.limit` lasts and
        `retry.retryOn` retries its cause, else dead-lettered (naming why it was not retried)."""
        retry = settings_of(self.spec, task).retry
        assert retry is not None
        attempt, error = result.attempt, result.error or "failed"
        if item is None:
            base = entry.attempt_base or 0
        else:
            base = int(self.item_map(task.name, "item_attempt_base").get(item, 0))
        cause = causes.Cause.of(result.details)
        rules = retry.retry_on or workflows.RetryOn()
        refused = causes.refusal(
            cause,
            http_status=rules.http_status,
            exit_codes=rules.exit_codes,
            exceptions=rules.exceptions,
        )
        if refused is not None:
            self.dead_letter(task.name, item, attempt, f"not retried ({refused}): {error}")
            return
        if attempt - base <= retry.limit:
            wait = backoff.delay_seconds(
                attempt,
                initial_seconds=retry.backoff.duration_seconds,
                factor=retry.backoff.factor,
                max_seconds=retry.backoff.max_duration_seconds,
                jitter=retry.backoff.jitter,
                rng=self.rng,
            )
            wait = causes.wait_seconds(cause, wait, retry.backoff.max_duration_seconds)
            due = due_text(self.now + timedelta(seconds=wait))
            entry.error = budget.short(error)
            if item is None:
                entry.phase, entry.next_retry_at = "Retrying", due
            else:
                self.item_map(task.name, "retry_at")[item] = due
            return
        self.dead_letter(task.name, item, attempt, error)

    def dead_letter(self, name: str, item: int | None, attempts: int, error: str) -> None:
        entry = self.tasks[name]
        error = budget.short(error)
        at = timestamps.text(self.now)
        letter = DeadLetter(task=name, item=item, attempts=attempts, error=error, at=at)
        if item is None:
            entry.phase, entry.finished_at, entry.error = "DeadLettered", at, error
            entry.next_retry_at = None
        else:
            self.items(name, "dead_items").add(item)
            # Its attempts stay in itemAttempts: a manual retry counts on from them.
            self.item_map(name, "item_attempts")[item] = str(attempts)
        self.new_letters.append(letter)
        letters = self.status.dead_letters
        letters.append(letter)
        del letters[: -budget.DEAD_LETTERS_KEPT]
        self.status.dead_letter_count = (self.status.dead_letter_count or 0) + 1

    # state -----------------------------------------------------------------------------------

    def in_flight(self, tasks: list[Task] | None = None) -> int:
        count = 0
        for task in self.all if tasks is None else tasks:
            if task.for_each is None:
                count += self.tasks[task.name].phase in IN_FLIGHT
            else:
                count += len(self.items(task.name, "running_items"))
        return count

    # phases ----------------------------------------------------------------------------------

    def settle(self) -> None:
        self._base_context = None
        for task in self.all:
            entry = self.tasks[task.name]
            if task.for_each is None or entry.phase != "Running":
                continue
            total = entry.items or 0
            done = len(self.items(task.name, "done_items"))
            dead = len(self.items(task.name, "dead_items"))
            if done + dead < total:
                continue
            entry.finished_at = timestamps.text(self.now)
            entry.phase = "Succeeded" if dead == 0 else "DeadLettered"
            entry.next_item = None
            if dead == 0:  # a manual retry of dead children needs their items
                entry.items_digest = None
                self.item_map(task.name, "item_attempt_base").clear()
                self.item_map(task.name, "item_attempts").clear()
                self.rendered.pop(task.name, None)

    def progress(self) -> tuple[int, int]:
        finished = total = 0
        for task in self.all:
            entry = self.tasks[task.name]
            if task.for_each is not None and entry.items is not None:
                total += entry.items
                if entry.phase == "Skipped":  # stopped, terminated or past its deadline
                    finished += entry.items
                    continue
                done = self.items(task.name, "done_items")
                finished += len(done) + len(self.items(task.name, "dead_items"))
            else:
                total += 1
                finished += entry.phase in FINISHED
        return finished, total

    def wake_at(self) -> datetime | None:
        moments = []
        for entry in self.tasks.values():
            if entry.phase == "Retrying" and entry.next_retry_at:
                moments.append(timestamps.parse(entry.next_retry_at))
            moments += [timestamps.parse(due) for due in entry.retry_at or {}]
        deadline = self.deadline()
        if deadline is not None and self.dag_outcome() is None:
            moments.append(deadline)
        return min(moments) if moments else None

    def deadline(self) -> datetime | None:
        started = self.status.started_at
        if self.spec.active_deadline_seconds is None or not started:
            return None
        return timestamps.parse(started) + timedelta(seconds=self.spec.active_deadline_seconds)

    def skip_unfinished(self, reason: workflows.SkipReason, *, exits: bool = True) -> None:
        """Every task not finished is Skipped for `reason` (the DAG's alone unless `exits`);
        an attempt of it still out reports to no one."""
        for task in self.all:
            entry = self.tasks[task.name]
            if entry.phase in FINISHED or (task.name in self.exits and not exits):
                continue
            self.skip(entry, reason)
            entry.next_retry_at = None
            if task.for_each is not None:
                self.items(task.name, "running_items").clear()
                self.item_map(task.name, "retry_at").clear()

    def skip(self, entry: TaskStatus, reason: workflows.SkipReason) -> None:
        entry.phase, entry.reason, entry.finished_at = "Skipped", reason, timestamps.text(self.now)

    def main_open(self) -> bool:
        """Whether the DAG's tasks may still launch attempts (not stopped, terminated or past
        its deadline)."""
        if self.spec.shutdown is not None:
            return False
        deadline = self.deadline()
        return deadline is None or self.now < deadline

    def shut(self) -> None:
        """Applies `spec.shutdown` and the deadline to the DAG's tasks: Terminate and a passed
        deadline skip what has not finished at once (attempts out are cancelled or ignored);
        Stop lets attempts out finish, then skips the rest."""
        if self.dag_outcome() is not None:
            return
        if self.spec.shutdown == "Terminate":
            self.skip_unfinished("Terminated", exits=False)
        elif (deadline := self.deadline()) is not None and self.now >= deadline:
            self.skip_unfinished("Deadline", exits=False)
        elif self.spec.shutdown == "Stop" and not self.in_flight(self.spec.tasks):
            self.skip_unfinished("Stopped", exits=False)

    def dag_outcome(self) -> tuple[WorkflowPhase, str] | None:
        """How the DAG ended (its phase and message), or None while it runs."""
        main = [self.tasks[t.name] for t in self.spec.tasks]
        if any(entry.phase not in FINISHED for entry in main):
            return None
        reasons = {entry.reason for entry in main if entry.phase == "Skipped"}
        if "Terminated" in reasons:
            return "Terminated", "terminated (spec.shutdown: Terminate)"
        if "Stopped" in reasons:
            return "Stopped", "stopped (spec.shutdown: Stop): running attempts finished"
        if "Deadline" in reasons:
            return "Failed", f"activeDeadlineSeconds ({self.spec.active_deadline_seconds}) exceeded"
        if all(entry.phase == "Succeeded" or entry.reason == "ConditionFalse" for entry in main):
            return "Succeeded", "all tasks succeeded"
        failed = sorted(
            t.name for t in self.spec.tasks if self.tasks[t.name].phase == "DeadLettered"
        )
        return "Failed", f"dead-lettered: {', '.join(failed)}" if failed else "tasks were skipped"

    def exits_left(self) -> int:
        return sum(self.tasks[name].phase not in FINISHED for name in self.exits)

    def conclude(self, generation: int | None) -> None:
        status = self.status
        phase: WorkflowPhase
        outcome = self.dag_outcome()
        if status.phase in workflows.ENDED_PHASES:
            phase, message = status.phase, status.message or ""
        elif outcome is not None and not self.exits_left():
            phase, message = outcome
            if self.exits:
                message += f"; exit tasks: {self._exit_summary()}"
        elif outcome is not None:
            phase = "Running"
            message = f"running exit tasks ({outcome[0]}: {outcome[1]})"
        elif self.spec.suspend:
            phase, message = "Suspended", "suspended: running tasks finish, no new ones start"
        elif self.spec.shutdown == "Stop":
            phase = "Running"
            message = f"stopping: {self.in_flight()} attempts in flight finish, no new ones start"
        else:
            phase = "Running"
            message = f"{self.in_flight()} in flight"
        ended = phase in workflows.ENDED_PHASES
        if ended and status.finished_at is None:
            status.finished_at = timestamps.text(self.now)
        if phase != "Suspended" and self.enqueue and status.started_at is None:
            status.started_at = timestamps.text(self.now)
        finished, total = self.progress()
        status.phase, status.message, status.progress = phase, message, f"{finished}/{total}"
        status.observed_generation = generation
        status.conditions = conditions.kstatus(
            status.conditions,
            ready=phase == "Succeeded",
            reconciling=phase == "Running",
            stalled=ended and phase != "Succeeded",
            reason=phase,
            message=message,
            generation=generation,
            now=self.now,
        )

    def _exit_summary(self) -> str:
        failed = sorted(name for name in self.exits if self.tasks[name].phase != "Succeeded")
        return "all succeeded" if not failed else f"not succeeded: {', '.join(failed)}"
