"""What one call of the workflow engine launches: ready tasks in DAG order, due retries,
forEach children in item order, within `spec.concurrency`; rendering each attempt's action and
templates (treadle.core.actions) with the context status gives."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from treadle.api.workflows import Task, TaskStatus
from treadle.core import actions, reads, runvalues, sandbox, templating, timestamps
from treadle.core.messages import TaskMessage
from treadle.core.runstate import OutputId, RunState

DEFAULT_TIMEOUT_SECONDS = 60.0
MAX_FOR_EACH_ITEMS = 10_000
"""SPEC, Limits and bad input: the items one forEach task may fan out to."""


FALSE_WORDS = frozenset({"false", "no", "off", "0", ""})


def _as_seen(task: str, output: Any) -> Any:
    """A task's output as templates see it: text is marked as its task's, so that reading a
    field of it says the output was text, not JSON."""
    return sandbox.TextOutput.of(task, output) if isinstance(output, str) else output


def truthy(value: Any) -> bool:
    """A `when` result: false, "false" (any case, also "no", "off", "0"), 0, null and empty
    strings, lists and objects are false; anything else is true."""
    if isinstance(value, str):
        return value.strip().lower() not in FALSE_WORDS
    return bool(value)


RENDER_SECONDS_PER_CALL = 0.05
"""CPU time one engine call may spend rendering a workflow's templates; the rest of what was
due is launched on the next call, after the other workflows had theirs (each render is
bounded on its own: sandbox.MAX_CPU_SECONDS)."""


class Run(RunState):
    """A RunState that also schedules: the engine's working object."""

    render_clock: Callable[[], float] = staticmethod(time.thread_time)
    render_started: float | None = None
    render_paused = False
    """Rendering stopped for this call: its budget is spent (the engine wakes again at once)."""

    def renders_spent(self) -> bool:
        """Whether this call's rendering budget is spent (checked before each render)."""
        now = self.render_clock()
        if self.render_started is None:
            self.render_started = now
        if now - self.render_started > RENDER_SECONDS_PER_CALL:
            self.render_paused = True
        return self.render_paused

    def context(self, item: Any = None) -> dict[str, Any]:
        if self._base_context is None:
            self._base_context = {
                "params": self.spec.params or {},
                "workflow": self._workflow_context(),
                "tasks": self._task_outputs(),
            }
        if item is None:
            return self._base_context
        return {**self._base_context, "item": item}

    def _workflow_context(self) -> dict[str, Any]:
        """`workflow`: its name, namespace and uid; once the DAG has ended (for exit tasks)
        also its outcome as `phase` and its dead letters as `failures`."""
        outcome = self.dag_outcome()
        if outcome is None:
            return self.who.context
        failures = [
            letter.model_dump(mode="json", by_alias=True, exclude_none=True)
            for letter in self.status.dead_letters
        ]
        return {**self.who.context, "phase": outcome[0], "failures": failures}

    def _task_outputs(self) -> dict[str, Any]:
        """What templates see of the tasks that succeeded.  An output stored in Redis that was
        not given (Redis lost it, or it was too large to load) is left out: a template that
        reads it fails and names it."""
        outputs: dict[str, Any] = {}
        stored = {**self.stored_outputs, **self.fresh} if self.fresh else self.stored_outputs
        self.missing = set()
        for task in self.all:
            entry = self.tasks[task.name]
            if entry.phase != "Succeeded":
                continue
            if task.for_each is None:
                if entry.output_ref is None:
                    outputs[task.name] = {"output": _as_seen(task.name, entry.output)}
                    continue
                wanted: list[OutputId] = [(task.name, None)]
            else:
                wanted = [(task.name, index) for index in range(entry.items or 0)]
            if all(key in stored for key in wanted):
                values = [stored[key] for key in wanted]
                outputs[task.name] = (
                    {"output": _as_seen(task.name, values[0])}
                    if task.for_each is None
                    else {"outputs": values}
                )
            else:
                outputs[task.name] = {}
                if task.name not in self.unavailable:
                    self.missing.add(task.name)
        return outputs

    def _why(self, task: Task, error: str) -> str:
        """A template error, with the reason when it read outputs that cannot be had (lost,
        too large, or of a task that was skipped)."""
        skipped = sorted(
            name
            for name in reads.reads(task)
            if name in self.tasks and self.tasks[name].phase == "Skipped"
        )
        if skipped:
            name = skipped[0]
            return (
                f"task {name!r} was skipped ({self.tasks[name].reason}) and has no output "
                f"(`{{{{ tasks.{name} is defined }}}}` tells whether it ran); {error}"
            )
        gone = sorted(reads.reads(task) & self.unavailable)
        if not gone:
            return error
        return (
            f"the stored output of task {gone[0]!r} is not available (lost from Redis, or too "
            f"large to load for templates); {error}"
        )

    def waits(self, task: Task) -> bool:
        """Whether the task reads stored outputs not given yet: it is not started now, and
        the caller is asked for them (Step.wants_outputs)."""
        self.context()
        if self.missing and reads.reads(task) & self.missing:
            self.deferred = True
            return True
        return False

    def item_values(self, task: Task) -> list[Any]:
        """A forEach task's items: rendered again when the caller kept none (this operator
        restarted), and refused when they differ from the first rendering's."""
        digest = self.tasks[task.name].items_digest
        kept = self.rendered.get(task.name)
        if kept is not None and kept[0] == digest:
            return kept[1]
        values = self._render_items(task)
        found = runvalues.items_digest(values)
        if digest is not None and found != digest:
            raise templating.TemplateError(
                "forEach rendered to other items than when the task started"
            )
        self.rendered[task.name] = (found, values)
        return values

    def _render_items(self, task: Task) -> list[Any]:
        assert task.for_each is not None
        values = templating.render_value(task.for_each, self.context())
        if not isinstance(values, list):
            raise templating.TemplateError(
                f"forEach must render to a list, got {type(values).__name__}"
            )
        if len(values) > MAX_FOR_EACH_ITEMS:
            raise templating.TemplateError(
                f"forEach gives {len(values)} items (at most {MAX_FOR_EACH_ITEMS})"
            )
        return values

    def render(self, task: Task, item: Any) -> dict[str, Any]:
        return actions.render(task, self.context(item))

    def message(
        self, task: Task, item: int | None, attempt: int, action: dict[str, Any]
    ) -> TaskMessage:
        settings = runvalues.settings_of(self.spec, task)
        guards: dict[str, Any] = {}
        if settings.circuit_breaker is not None:
            guards["circuitBreaker"] = settings.circuit_breaker.model_dump(by_alias=True)
        if settings.rate_limit is not None:
            guards["rateLimit"] = settings.rate_limit.model_dump(by_alias=True)
        return TaskMessage(
            run=self.run_generation,
            workflow_uid=self.who.uid,
            workflow=f"{self.who.namespace}/{self.who.name}",
            task=task.name,
            item=item,
            attempt=attempt,
            action=action,
            timeout_seconds=settings.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
            guards=guards,
        )

    def launch(self, task: Task, item: int | None, attempt: int) -> bool:
        """Enqueues one attempt; False when its templates cannot be rendered (dead-lettered)
        or it waits for outputs (nothing changes)."""
        entry = self.tasks[task.name]
        if self.waits(task) or self.renders_spent():
            return False
        try:
            item_value = None if item is None else self.item_values(task)[item]
            action = self.render(task, item_value)
        except templating.TemplateError as error:
            self.dead_letter(task.name, item, attempt, self._why(task, f"template: {error}"))
            return False
        self.enqueue.append(self.message(task, item, attempt, action))
        if entry.started_at is None:
            entry.started_at = timestamps.text(self.now)
        if item is None:
            entry.phase, entry.attempts, entry.next_retry_at = "Queued", attempt, None
            entry.waiting = None
            entry.worker = entry.attempt_started_at = None
        else:
            self.items(task.name, "running_items").add(item)
            if attempt > 1:
                self.item_map(task.name, "item_attempts")[item] = str(attempt)
        return True

    def expand(self, task: Task) -> None:
        """A ready forEach task: render its list, then its children wait to be launched."""
        entry = self.tasks[task.name]
        if self.waits(task) or self.renders_spent():
            return
        entry.items_digest = None
        try:
            values = self.item_values(task)
        except templating.TemplateError as error:
            reason = self._why(task, str(error))
            self.dead_letter(
                task.name, None, 0, reason if reason.startswith("forEach") else f"forEach: {reason}"
            )
            return
        entry.phase, entry.items = "Running", len(values)
        entry.items_digest = self.rendered[task.name][0]
        entry.succeeded = entry.failed = entry.dead_lettered = 0
        entry.started_at = timestamps.text(self.now)

    def schedule(self) -> None:
        """Launches what may start: the DAG's tasks while it is open (not stopped, terminated
        or past its deadline), then, once it has ended, the exit tasks."""
        slots = self.spec.concurrency - self.in_flight()
        if self.main_open():
            slots = self._schedule(self.spec.tasks, slots)
        if self.on_exit_due():
            self._schedule(self.spec.on_exit, slots)

    def on_exit_due(self) -> bool:
        return bool(self.exits) and self.dag_outcome() is not None

    def _schedule(self, tasks: list[Task], slots: int) -> int:
        # Retries that are due go first.
        for task in tasks:
            entry = self.tasks[task.name]
            if task.for_each is None and entry.phase == "Retrying":
                due = entry.next_retry_at
                if slots > 0 and (due is None or timestamps.parse(due) <= self.now):
                    slots -= self.launch(task, None, (entry.attempts or 1) + 1)
            elif task.for_each is not None and entry.retry_at is not None and slots > 0:
                retrying = self.item_map(task.name, "retry_at")
                attempts = self.item_map(task.name, "item_attempts")
                when = {due: timestamps.parse(due) for due in set(retrying.values())}
                for item in sorted(i for i, due in retrying.items() if when[due] <= self.now):
                    if slots <= 0 or self.waits(task):
                        break
                    due = retrying.pop(item)
                    launched = self.launch(task, item, int(attempts.get(item, 1)) + 1)
                    if not launched and self.render_paused:
                        retrying[item] = due  # rendering is spent: retried next call
                        break
                    slots -= launched
        names = {task.name for task in tasks}
        for name in self.dag.order:
            if name not in names:
                continue
            task, entry = self.by_name[name], self.tasks[name]
            if entry.phase == "Pending":
                readiness = self.readiness(task)
                if readiness == "UpstreamFailed":
                    self.skip(entry, "UpstreamFailed")
                    continue
                if readiness != "ready" or (task.for_each is None and slots <= 0):
                    continue
                if task.when is not None and not self.condition_holds(task):
                    continue
                if task.for_each is not None:
                    self.expand(task)
                else:
                    slots -= self.launch(task, None, 1)
            if task.for_each is not None and entry.phase == "Running":
                slots = self._launch_children(task, entry, slots)
        return slots

    def readiness(self, task: Task) -> Literal["ready", "waiting", "UpstreamFailed"]:
        """ "ready" once every dependency Succeeded or was skipped by its own condition (Argo's
        rule: a false `when` upstream does not stop its dependents); "UpstreamFailed" when one
        was dead-lettered or skipped for any other reason; else "waiting"."""
        waiting = False
        for dependency in task.depends_on:
            entry = self.tasks[dependency]
            if entry.phase == "DeadLettered":
                return "UpstreamFailed"
            if entry.phase == "Skipped":
                if entry.reason != "ConditionFalse":
                    return "UpstreamFailed"
            elif entry.phase != "Succeeded":
                waiting = True
        return "waiting" if waiting else "ready"

    def condition_holds(self, task: Task) -> bool:
        """Renders the task's `when`: False (the task is then Skipped, ConditionFalse, or
        dead-lettered when the condition cannot be rendered) or True."""
        assert task.when is not None
        if self.waits(task):
            return False
        try:
            value = templating.render_value(task.when, self.context())
        except templating.TemplateError as error:
            self.dead_letter(task.name, None, 0, self._why(task, f"when: {error}"))
            return False
        if truthy(value):
            return True
        self.skip(self.tasks[task.name], "ConditionFalse")
        return False

    def _launch_children(self, task: Task, entry: TaskStatus, slots: int) -> int:
        started = (
            self.items(task.name, "running_items")
            | self.items(task.name, "done_items")
            | self.items(task.name, "dead_items")
            | set(self.item_map(task.name, "retry_at"))
        )
        item = entry.next_item or 0
        if self.waits(task):
            return slots
        while slots > 0 and item < (entry.items or 0):
            if item not in started:
                launched = self.launch(task, item, 1)
                if not launched and self.render_paused:
                    break  # this call's rendering is spent: the item is launched next call
                slots -= launched
            item += 1
        entry.next_item = item
        return slots
