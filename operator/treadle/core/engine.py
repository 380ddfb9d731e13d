"""The workflow engine: a pure state machine from (spec, status, results, now) to the next
status and the attempts to enqueue.

Status is the record of truth: everything the engine needs to go on lives in it, so an operator
that restarts (or a Redis that lost its data) resumes from status alone.  For a forEach task the
children are kept as compact index sets (`runningItems`, `doneItems`, `deadItems`) plus the
attempts and retry times of children that failed, so a 10,000-child fan-out stays small.

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
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from treadle.api import workflows
from treadle.api.workflows import Task, WorkflowSpec
from treadle.core import backoff, conditions, dags, patches, ranges, templating
from treadle.core.messages import INLINE_OUTPUT_LIMIT_BYTES, TaskMessage, TaskResult

DEFAULT_TIMEOUT_SECONDS = 60.0
MAX_FOR_EACH_ITEMS = 10_000
"""SPEC, Limits and bad input: the items one forEach task may fan out to."""
OUTPUT_LIMIT_BYTES = INLINE_OUTPUT_LIMIT_BYTES
"""Largest output kept in status per task (per child for forEach).  Workers store larger ones
in Redis and report a reference (`outputRef`); the driver reads them back for templates
(`advance(..., outputs=...)`).  A larger output that arrives inline anyway is cut to a note."""

FINISHED = ("Succeeded", "DeadLettered", "Skipped")
IN_FLIGHT = ("Queued", "Running")


@dataclass(frozen=True)
class Identity:
    uid: str
    name: str
    namespace: str
    pool: str

    @property
    def context(self) -> dict[str, str]:
        return {"name": self.name, "namespace": self.namespace, "uid": self.uid}


@dataclass
class Step:
    status: dict[str, Any]
    enqueue: list[TaskMessage] = field(default_factory=list)
    wake_at: datetime | None = None
    """When the engine should be called again without new results (a retry or the deadline)."""

    @property
    def finished(self) -> bool:
        return self.status.get("phase") in ("Succeeded", "Failed")


def _ts(moment: datetime) -> str:
    return conditions.timestamp(moment)


def _due(moment: datetime) -> str:
    """A retry time, rounded up to the second status can hold: never earlier than asked."""
    whole = moment.replace(microsecond=0)
    return _ts(whole if whole == moment else whole + timedelta(seconds=1))


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _cap(output: Any) -> Any:
    encoded = json.dumps(output)
    if len(encoded) <= OUTPUT_LIMIT_BYTES:
        return output
    return {"truncated": True, "bytes": len(encoded)}


def _settings(spec: WorkflowSpec, task: Task) -> workflows.TaskSettings:
    defaults = spec.defaults
    return workflows.TaskSettings(
        timeout_seconds=task.timeout_seconds or defaults.timeout_seconds,
        retry=task.retry or defaults.retry or workflows.RetryPolicy(),
        circuit_breaker=task.circuit_breaker or defaults.circuit_breaker,
        rate_limit=task.rate_limit or defaults.rate_limit,
    )


class _Run:
    """One call of the engine: mutable working state over a deep copy of status."""

    def __init__(
        self,
        spec: WorkflowSpec,
        status: Mapping[str, Any],
        now: datetime,
        who: Identity,
        rng: random.Random,
        outputs: Mapping[str, Any] | None = None,
    ) -> None:
        self.spec, self.now, self.who, self.rng = spec, now, who, rng
        self.stored_outputs = outputs or {}
        self.status: dict[str, Any] = patches.copy_json(status)
        self.run_generation: int | None = self.status.get("runGeneration")
        self.tasks: dict[str, dict[str, Any]] = self.status.setdefault("tasks", {})
        for task in spec.tasks:
            self.tasks.setdefault(task.name, {"phase": "Pending"})
        self.by_name = {task.name: task for task in spec.tasks}
        self.dag = dags.Dag.from_tasks([(t.name, t.depends_on) for t in spec.tasks])
        self.enqueue: list[TaskMessage] = []
        self.status.setdefault("deadLetters", [])
        self._sets: dict[tuple[str, str], set[int]] = {}

    def items(self, name: str, key: str) -> set[int]:
        """A forEach task's index set (runningItems, doneItems, deadItems), decoded once per
        engine call and written back by `flush`: a pass applying thousands of results must not
        decode and encode the sets once per result."""
        if (name, key) not in self._sets:
            self._sets[(name, key)] = ranges.decode(self.tasks[name].get(key))
        return self._sets[(name, key)]

    def flush(self) -> None:
        for (name, key), found in self._sets.items():
            entry = self.tasks[name]
            if key in entry or found:
                entry[key] = ranges.encode(found)

    # results ---------------------------------------------------------------------------------

    def apply(self, result: TaskResult) -> None:
        task = self.by_name.get(result.task)
        entry = self.tasks.get(result.task)
        if task is None or entry is None or result.run != self.run_generation:
            return  # not this run's (an earlier run of a spec that changed)
        if task.for_each is None:
            if result.outcome == "succeeded" and entry["phase"] in (*IN_FLIGHT, "Retrying"):
                # Any attempt's success counts: a late success of an earlier attempt, after a
                # retry was queued, is the task's success (the retry then finds it recorded).
                entry.pop("nextRetryAt", None)
            elif entry["phase"] not in IN_FLIGHT or entry.get("attempts") != result.attempt:
                return  # a duplicate or a straggler of an earlier attempt
            if result.outcome == "succeeded":
                entry.update(phase="Succeeded", finishedAt=_ts(self.now))
                if result.output_ref is not None:
                    entry["outputRef"] = result.output_ref
                else:
                    entry["output"] = _cap(result.output)
                entry.pop("error", None)
            else:
                self._failed(task, entry, None, result.attempt, result.error or "failed")
            return
        running = self.items(task.name, "runningItems")
        item = result.item
        attempts = entry.setdefault("itemAttempts", {})
        if item is None or "items" not in entry:
            return
        retrying = entry.get("retryAt") or {}
        late_success = result.outcome == "succeeded" and (item in running or str(item) in retrying)
        if not late_success and (
            item not in running or attempts.get(str(item), 1) != result.attempt
        ):
            return
        running.discard(item)
        retrying.pop(str(item), None)
        if result.outcome == "succeeded":
            done = self.items(task.name, "doneItems")
            done.add(item)
            entry["succeeded"] = len(done)
            if result.output_ref is not None:
                entry.setdefault("outputRefs", {})[str(item)] = result.output_ref
            else:
                entry.setdefault("outputs", {})[str(item)] = _cap(result.output)
            attempts.pop(str(item), None)
            (entry.get("itemAttemptBase") or {}).pop(str(item), None)
        else:
            entry["failed"] = int(entry.get("failed", 0)) + 1
            self._failed(task, entry, item, result.attempt, result.error or "failed")

    def _failed(
        self, task: Task, entry: dict[str, Any], item: int | None, attempt: int, error: str
    ) -> None:
        retry = _settings(self.spec, task).retry
        assert retry is not None
        if item is None:
            base = int(entry.get("attemptBase") or 0)
        else:
            base = int((entry.get("itemAttemptBase") or {}).get(str(item), 0))
        if attempt - base <= retry.limit:
            wait = backoff.delay_seconds(
                attempt,
                initial_seconds=retry.backoff.duration_seconds,
                factor=retry.backoff.factor,
                max_seconds=retry.backoff.max_duration_seconds,
                jitter=retry.backoff.jitter,
                rng=self.rng,
            )
            due = _due(self.now + timedelta(seconds=wait))
            entry["error"] = error
            if item is None:
                entry.update(phase="Retrying", nextRetryAt=due)
            else:
                entry.setdefault("retryAt", {})[str(item)] = due
            return
        self._dead_letter(task.name, item, attempt, error)

    def _dead_letter(self, name: str, item: int | None, attempts: int, error: str) -> None:
        entry = self.tasks[name]
        letter: dict[str, Any] = {
            "task": name,
            "attempts": attempts,
            "error": error,
            "at": _ts(self.now),
        }
        if item is None:
            entry.update(phase="DeadLettered", finishedAt=_ts(self.now), error=error)
            entry.pop("nextRetryAt", None)
        else:
            letter["item"] = item
            dead = self.items(name, "deadItems")
            dead.add(item)
            entry["deadLettered"] = len(dead)
            entry.setdefault("itemAttempts", {}).pop(str(item), None)
        self.status["deadLetters"].append(letter)

    # scheduling ------------------------------------------------------------------------------

    def in_flight(self) -> int:
        count = 0
        for task in self.spec.tasks:
            entry = self.tasks[task.name]
            if task.for_each is None:
                count += entry["phase"] in IN_FLIGHT
            else:
                count += len(self.items(task.name, "runningItems"))
        return count

    def context(self, item: Any = None) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        for task in self.spec.tasks:
            entry = self.tasks[task.name]
            if entry["phase"] != "Succeeded":
                continue
            # An output stored in Redis that could not be read back (Redis lost it) is left out:
            # a template that reads it fails and names it.
            if task.for_each is None:
                ref = entry.get("outputRef")
                if ref is None:
                    outputs[task.name] = {"output": entry.get("output")}
                elif ref in self.stored_outputs:
                    outputs[task.name] = {"output": self.stored_outputs[ref]}
                else:
                    outputs[task.name] = {}
            else:
                children = entry.get("outputs") or {}
                refs = entry.get("outputRefs") or {}
                ordered = []
                for index in range(int(entry.get("items", 0))):
                    ref = refs.get(str(index))
                    if ref is not None and ref not in self.stored_outputs:
                        break
                    ordered.append(
                        self.stored_outputs[ref] if ref is not None else children.get(str(index))
                    )
                else:
                    outputs[task.name] = {"outputs": ordered}
                    continue
                outputs[task.name] = {}
        found: dict[str, Any] = {
            "params": self.spec.params or {},
            "workflow": self.who.context,
            "tasks": outputs,
        }
        if item is not None:
            found["item"] = item
        return found

    def render(self, task: Task, item: Any) -> dict[str, Any]:
        context = self.context(item)
        if task.command is not None:
            args = [templating.render_text(arg, context) for arg in task.command.args]
            return {"command": {"args": args}}
        if task.python is not None:
            kwargs = _render_strings(
                task.python.kwargs or {}, lambda text: templating.render_value(text, context)
            )
            return {"python": {"callable": task.python.callable, "kwargs": kwargs}}
        assert task.http is not None
        http = task.http.model_dump(by_alias=True, exclude_none=True)
        http["url"] = templating.render_text(task.http.url, context)
        http["headers"] = [
            {**header, "value": templating.render_text(header["value"], context)}
            if "value" in header
            else header
            for header in http.get("headers", [])
        ]
        if task.http.body is not None:
            http["body"] = _render_strings(
                task.http.body, lambda text: templating.render_text(text, context)
            )
        return {"http": http}

    def message(
        self, task: Task, item: int | None, attempt: int, action: dict[str, Any]
    ) -> TaskMessage:
        settings = _settings(self.spec, task)
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
        """Enqueues one attempt; False when its templates cannot be rendered (dead-lettered)."""
        entry = self.tasks[task.name]
        item_value = None
        if item is not None:
            item_value = (entry.get("itemValues") or [])[item]
        try:
            action = self.render(task, item_value)
        except templating.TemplateError as error:
            self._dead_letter(task.name, item, attempt, f"template: {error}")
            return False
        self.enqueue.append(self.message(task, item, attempt, action))
        entry.setdefault("startedAt", _ts(self.now))
        if item is None:
            entry.update(phase="Queued", attempts=attempt)
            entry.pop("nextRetryAt", None)
        else:
            self.items(task.name, "runningItems").add(item)
            if attempt > 1:
                entry.setdefault("itemAttempts", {})[str(item)] = attempt
        return True

    def expand(self, task: Task) -> None:
        """A ready forEach task: render its list, then its children wait to be launched."""
        entry = self.tasks[task.name]
        assert task.for_each is not None
        try:
            values = templating.render_value(task.for_each, self.context())
        except templating.TemplateError as error:
            self._dead_letter(task.name, None, 0, f"forEach: {error}")
            return
        if not isinstance(values, list):
            self._dead_letter(
                task.name, None, 0, f"forEach must render to a list, got {type(values).__name__}"
            )
            return
        if len(values) > MAX_FOR_EACH_ITEMS:
            self._dead_letter(
                task.name, None, 0,
                f"forEach gives {len(values)} items (at most {MAX_FOR_EACH_ITEMS})",
            )  # fmt: skip
            return
        entry.update(
            phase="Running",
            items=len(values),
            itemValues=values,
            succeeded=0,
            failed=0,
            deadLettered=0,
            startedAt=_ts(self.now),
        )

    def schedule(self) -> None:
        slots = self.spec.concurrency - self.in_flight()
        # Retries that are due go first.
        for task in self.spec.tasks:
            entry = self.tasks[task.name]
            if task.for_each is None and entry["phase"] == "Retrying":
                if slots > 0 and parse_timestamp(entry["nextRetryAt"]) <= self.now:
                    slots -= self.launch(task, None, int(entry.get("attempts", 1)) + 1)
            elif task.for_each is not None:
                for key, due in sorted(
                    (entry.get("retryAt") or {}).items(), key=lambda kv: int(kv[0])
                ):
                    if slots <= 0 or parse_timestamp(due) > self.now:
                        continue
                    item = int(key)
                    del entry["retryAt"][key]
                    attempt = int(entry.setdefault("itemAttempts", {}).get(key, 1)) + 1
                    slots -= self.launch(task, item, attempt)
        for name in self.dag.order:
            task, entry = self.by_name[name], self.tasks[name]
            if entry["phase"] == "Pending":
                deps = [self.tasks[d]["phase"] for d in task.depends_on]
                if any(phase in ("DeadLettered", "Skipped") for phase in deps):
                    entry.update(phase="Skipped", finishedAt=_ts(self.now))
                    continue
                if not all(phase == "Succeeded" for phase in deps):
                    continue
                if task.for_each is not None:
                    self.expand(task)
                elif slots > 0:
                    slots -= self.launch(task, None, 1)
            if task.for_each is not None and entry["phase"] == "Running":
                slots = self._launch_children(task, entry, slots)

    def _launch_children(self, task: Task, entry: dict[str, Any], slots: int) -> int:
        started = (
            self.items(task.name, "runningItems")
            | self.items(task.name, "doneItems")
            | self.items(task.name, "deadItems")
            | {int(k) for k in entry.get("retryAt") or {}}
        )
        item = int(entry.get("nextItem", 0))
        while slots > 0 and item < int(entry["items"]):
            if item not in started:
                slots -= self.launch(task, item, 1)
            item += 1
        entry["nextItem"] = item
        return slots

    # phases ----------------------------------------------------------------------------------

    def settle(self) -> None:
        for task in self.spec.tasks:
            entry = self.tasks[task.name]
            if task.for_each is None or entry["phase"] != "Running":
                continue
            total = int(entry["items"])
            done = len(self.items(task.name, "doneItems"))
            dead = len(self.items(task.name, "deadItems"))
            if done + dead < total:
                continue
            entry["finishedAt"] = _ts(self.now)
            entry["phase"] = "Succeeded" if dead == 0 else "DeadLettered"
            entry.pop("nextItem", None)
            if dead == 0:  # a manual retry of dead children needs their values
                entry.pop("itemValues", None)
                entry.pop("itemAttemptBase", None)

    def progress(self) -> tuple[int, int]:
        finished = total = 0
        for task in self.spec.tasks:
            entry = self.tasks[task.name]
            if task.for_each is not None and "items" in entry:
                total += int(entry["items"])
                finished += int(entry.get("succeeded", 0)) + int(entry.get("deadLettered", 0))
                if entry["phase"] == "Skipped":
                    total += 1
                    finished += 1
            else:
                total += 1
                finished += entry["phase"] in FINISHED
        return finished, total

    def wake_at(self) -> datetime | None:
        moments = []
        for entry in self.tasks.values():
            if entry.get("phase") == "Retrying":
                moments.append(parse_timestamp(entry["nextRetryAt"]))
            moments += [parse_timestamp(due) for due in (entry.get("retryAt") or {}).values()]
        deadline = self.deadline()
        if deadline is not None and self.status.get("phase") not in ("Succeeded", "Failed"):
            moments.append(deadline)
        return min(moments) if moments else None

    def deadline(self) -> datetime | None:
        started = self.status.get("startedAt")
        if self.spec.active_deadline_seconds is None or not started:
            return None
        return parse_timestamp(started) + timedelta(seconds=self.spec.active_deadline_seconds)

    def conclude(self, generation: int | None) -> None:
        phases = [self.tasks[t.name]["phase"] for t in self.spec.tasks]
        if self.status.get("phase") in ("Succeeded", "Failed"):
            phase, message = self.status["phase"], self.status.get("message", "")
        elif all(p == "Succeeded" for p in phases):
            phase, message = "Succeeded", "all tasks succeeded"
        elif (deadline := self.deadline()) is not None and self.now >= deadline:
            phase = "Failed"
            message = f"activeDeadlineSeconds ({self.spec.active_deadline_seconds}) exceeded"
            for entry in self.tasks.values():
                if entry["phase"] not in FINISHED:
                    entry.update(phase="Skipped", finishedAt=_ts(self.now))
        elif all(p in FINISHED for p in phases):
            failed = sorted(
                t.name for t in self.spec.tasks if self.tasks[t.name]["phase"] == "DeadLettered"
            )
            phase, message = "Failed", f"dead-lettered: {', '.join(failed)}"
        elif self.spec.suspend:
            phase, message = "Suspended", "suspended: running tasks finish, no new ones start"
        else:
            phase = "Running"
            message = f"{self.in_flight()} in flight"
        if phase in ("Succeeded", "Failed"):
            self.status.setdefault("finishedAt", _ts(self.now))
        if phase != "Suspended" and self.enqueue:
            self.status.setdefault("startedAt", _ts(self.now))
        finished, total = self.progress()
        self.status.update(
            phase=phase,
            message=message,
            progress=f"{finished}/{total}",
            observedGeneration=generation,
        )
        ready = phase == "Succeeded"
        current = conditions.kstatus(
            self.status.get("conditions") or [],
            ready=ready,
            reconciling=phase == "Running",
            stalled=phase == "Failed",
            reason=phase,
            message=message,
            generation=generation,
            now=self.now,
        )
        self.status["conditions"] = current


def _render_strings(value: Any, render: Callable[[str], Any]) -> Any:
    """Every string inside a JSON value rendered with `render`; the rest kept as it is."""
    if isinstance(value, str):
        return render(value)
    if isinstance(value, dict):
        return {key: _render_strings(child, render) for key, child in value.items()}
    if isinstance(value, list):
        return [_render_strings(child, render) for child in value]
    return value


def secret_refs(spec: WorkflowSpec) -> list[tuple[str, str]]:
    """The (Secret, key) pairs the workflow's HTTP headers read; worker pods get them as env."""
    return sorted(
        {
            (header.value_from.secret_key_ref.name, header.value_from.secret_key_ref.key)
            for task in spec.tasks
            if task.http is not None
            for header in task.http.headers
            if header.value_from is not None
        }
    )


def advance(
    spec: WorkflowSpec,
    status: Mapping[str, Any],
    results: Sequence[TaskResult],
    *,
    now: datetime,
    who: Identity,
    generation: int | None = None,
    rng: random.Random | None = None,
    outputs: Mapping[str, Any] | None = None,
) -> Step:
    """The next status and the attempts to enqueue, given the results that arrived.

    `outputs` holds the values of outputs stored in Redis, by reference (`output_refs` says
    which ones status and the results refer to)."""
    run = _Run(spec, status, now, who, rng or random.Random(), outputs)
    if run.status.get("phase") not in ("Succeeded", "Failed"):
        for result in results:
            run.apply(result)
        run.settle()
        if not spec.suspend and not _deadline_passed(run):
            run.schedule()
            run.settle()
    run.conclude(generation)
    run.flush()
    return Step(run.status, run.enqueue, run.wake_at())


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
    due = _ts(now)
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
        spent = {
            int(letter["item"]): int(letter.get("attempts", 1))
            for letter in letters
            if letter.get("task") == name and letter.get("item") is not None
        }
        for item in dead:
            attempts = spent.get(item, 1)
            entry.setdefault("itemAttempts", {})[str(item)] = attempts
            entry.setdefault("itemAttemptBase", {})[str(item)] = attempts
            entry.setdefault("retryAt", {})[str(item)] = due
            revived.append(f"{name}[{item}]")
        entry.update(deadItems="", deadLettered=0, phase="Running")
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
    if revived_status.get("phase") == "Failed":
        revived_status["phase"] = "Running"
        revived_status.pop("finishedAt", None)
    return revived_status, revived


def _deadline_passed(run: _Run) -> bool:
    deadline = run.deadline()
    return deadline is not None and run.now >= deadline


def output_refs(status: Mapping[str, Any]) -> set[str]:
    """Every stored output status refers to (what templates may need read back)."""
    found: set[str] = set()
    for entry in (status.get("tasks") or {}).values():
        if entry.get("outputRef"):
            found.add(entry["outputRef"])
        found.update((entry.get("outputRefs") or {}).values())
    return found


def requeue_in_flight(
    spec: WorkflowSpec,
    status: Mapping[str, Any],
    *,
    now: datetime,
    who: Identity,
    outputs: Mapping[str, Any] | None = None,
) -> list[TaskMessage]:
    """The attempts status says are in flight, to enqueue again after Redis lost its data
    (idempotency keys make a duplicate harmless when one survived)."""
    run = _Run(spec, status, now, who, random.Random(), outputs)
    again: list[TaskMessage] = []
    for task in spec.tasks:
        entry = run.tasks[task.name]
        if task.for_each is None and entry["phase"] in IN_FLIGHT:
            again.append(
                run.message(task, None, int(entry.get("attempts", 1)), run.render(task, None))
            )
        elif task.for_each is not None:
            attempts = entry.get("itemAttempts") or {}
            values = entry.get("itemValues") or []
            for item in sorted(ranges.decode(entry.get("runningItems"))):
                action = run.render(task, values[item])
                again.append(run.message(task, item, int(attempts.get(str(item), 1)), action))
    return again
