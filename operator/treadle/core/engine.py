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
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from treadle.api import workflows
from treadle.api.workflows import Task, WorkflowSpec
from treadle.core import (
    actions,
    backoff,
    conditions,
    dags,
    notices,
    patches,
    ranges,
    templating,
    timestamps,
)
from treadle.core.messages import INLINE_OUTPUT_LIMIT_BYTES, TaskMessage, TaskResult

DEFAULT_TIMEOUT_SECONDS = 60.0
MAX_FOR_EACH_ITEMS = 10_000
"""SPEC, Limits and bad input: the items one forEach task may fan out to."""
OUTPUT_LIMIT_BYTES = INLINE_OUTPUT_LIMIT_BYTES
"""Largest output kept in status per task (per child for forEach).  Workers store larger ones
in Redis and report a reference (`outputRef`); the driver reads them back for templates
(`advance(..., outputs=...)`).  A larger output that arrives inline anyway is cut to a note."""

INLINE_BUDGET_BYTES = 64 * 1024
"""What all of a workflow's inline outputs may take in status together."""
ERROR_CHARS = 512
"""The longest error status keeps per task or dead letter (the worker's report is longer)."""
DEAD_LETTERS_KEPT = 50
STATUS_LIMIT_BYTES = 256 * 1024
"""SPEC: a workflow's status stays under this whatever the spec; a status that would not is
compacted further (errors shortened, fewer dead letters listed) and, failing that, the
workflow fails saying so, rather than meeting etcd's limit with a status write that never
succeeds."""

FINISHED = ("Succeeded", "DeadLettered", "Skipped")
OutputId = tuple[str, int | None]
"""A stored output: (task, forEach child index or None)."""
IN_FLIGHT = ("Queued", "Running")


def dedicated_pool(uid: str) -> str:
    """The pool of a workflow's own worker pods."""
    return f"wf-{uid}"


@dataclass(frozen=True)
class Identity:
    """Which workflow: from its metadata (`of`), the one way it is made."""

    uid: str
    name: str
    namespace: str
    pool: str

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> Identity:
        """From a workflow's metadata (a uid is missing while the webhook sees a create)."""
        uid = str(meta.get("uid") or "")
        name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
        return cls(uid=uid, name=name, namespace=namespace, pool=dedicated_pool(uid))

    @property
    def context(self) -> dict[str, str]:
        """What templates see as `workflow`."""
        return {"name": self.name, "namespace": self.namespace, "uid": self.uid}


@dataclass
class Step:
    status: dict[str, Any]
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
        return self.status.get("phase") in ("Succeeded", "Failed")


def _due(moment: datetime) -> str:
    """A retry time, rounded up to the second status can hold: never earlier than asked."""
    whole = moment.replace(microsecond=0)
    return timestamps.text(whole if whole == moment else whole + timedelta(seconds=1))


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def _short(error: str, limit: int = ERROR_CHARS) -> str:
    return error if len(error) <= limit else error[: limit - 1] + "…"


def items_digest(values: list[Any]) -> str:
    """Names a forEach task's rendered items, so a second rendering is known to agree."""
    encoded = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


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
        self.status: dict[str, Any] = patches.copy_json(status)
        self.phase_before: str | None = self.status.get("phase")
        self.new_letters: list[dict[str, Any]] = []
        self.run_generation: int | None = self.status.get("runGeneration")
        self.tasks: dict[str, dict[str, Any]] = self.status.setdefault("tasks", {})
        for task in spec.tasks:
            self.tasks.setdefault(task.name, {"phase": "Pending"})
        self.by_name = {task.name: task for task in spec.tasks}
        self.dag = dags.Dag.from_tasks([(t.name, t.depends_on) for t in spec.tasks])
        self.enqueue: list[TaskMessage] = []
        self.status.setdefault("deadLetters", [])
        self._sets: dict[tuple[str, str], set[int]] = {}
        self._maps: dict[tuple[str, str], dict[int, str]] = {}
        self._inline_used: int | None = None
        self._base_context: dict[str, Any] | None = None

    def items(self, name: str, key: str) -> set[int]:
        """A forEach task's index set (runningItems, doneItems, deadItems), decoded once per
        engine call and written back by `flush`: a pass applying thousands of results must not
        decode and encode the sets once per result."""
        if (name, key) not in self._sets:
            self._sets[(name, key)] = ranges.decode(self.tasks[name].get(key))
        return self._sets[(name, key)]

    def item_map(self, name: str, key: str) -> dict[int, str]:
        """A forEach task's per-child values (itemAttempts, retryAt, itemAttemptBase), decoded
        once per engine call like `items`; values are strings (attempts as digits)."""
        if (name, key) not in self._maps:
            self._maps[(name, key)] = ranges.decode_map(self.tasks[name].get(key))
        return self._maps[(name, key)]

    def flush(self) -> None:
        for (name, key), found in self._sets.items():
            entry = self.tasks[name]
            if key in entry or found:
                entry[key] = ranges.encode(found)
        for (name, key), values in self._maps.items():
            entry = self.tasks[name]
            if values:
                entry[key] = ranges.encode_map(dict(values))
            else:
                entry.pop(key, None)
        self._sets, self._maps = {}, {}

    def inline_left(self) -> int:
        if self._inline_used is None:
            self._inline_used = sum(
                _json_size(entry["output"]) for entry in self.tasks.values() if "output" in entry
            )
        return INLINE_BUDGET_BYTES - self._inline_used

    def keep_output(self, entry: dict[str, Any], result: TaskResult) -> None:
        """A single task's output: inline while the workflow's inline budget lasts, else the
        reference to its stored copy (a copy that came with the result still serves this
        call's templates)."""
        entry.pop("output", None)
        entry.pop("outputRef", None)
        has_copy = result.output_ref is None or result.output is not None
        size = _json_size(result.output) if has_copy else 0
        if result.output_ref is not None and (not has_copy or size > self.inline_left()):
            entry["outputRef"] = result.output_ref
            if has_copy:
                self.fresh[(result.task, result.item)] = result.output
            return
        # Inline: within the budget, or from a worker that stored nothing (cut when too large).
        entry["output"] = result.output
        if size > OUTPUT_LIMIT_BYTES:
            entry["output"] = {"truncated": True, "bytes": size}
            size = _json_size(entry["output"])
        used = INLINE_BUDGET_BYTES - self.inline_left()
        self._inline_used = used + size

    # results ---------------------------------------------------------------------------------

    def apply(self, result: TaskResult) -> None:
        task = self.by_name.get(result.task)
        entry = self.tasks.get(result.task)
        if task is None or entry is None or result.run != self.run_generation:
            return  # not this run's (an earlier run of a spec that changed)
        self._base_context = None
        if task.for_each is None:
            if result.outcome == "succeeded" and entry["phase"] in (*IN_FLIGHT, "Retrying"):
                # Any attempt's success counts: a late success of an earlier attempt, after a
                # retry was queued, is the task's success (the retry then finds it recorded).
                entry.pop("nextRetryAt", None)
            elif entry["phase"] not in IN_FLIGHT or entry.get("attempts") != result.attempt:
                return  # a duplicate or a straggler of an earlier attempt
            if result.outcome == "succeeded":
                entry.update(phase="Succeeded", finishedAt=timestamps.text(self.now))
                self.keep_output(entry, result)
                entry.pop("error", None)
            else:
                self._failed(task, entry, None, result.attempt, result.error or "failed")
            return
        item = result.item
        if item is None or "items" not in entry:
            return
        running = self.items(task.name, "runningItems")
        attempts = self.item_map(task.name, "itemAttempts")
        retrying = self.item_map(task.name, "retryAt")
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
            done = self.items(task.name, "doneItems")
            done.add(item)
            entry["succeeded"] = len(done)
            attempts.pop(item, None)
            self.item_map(task.name, "itemAttemptBase").pop(item, None)
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
            base = int(self.item_map(task.name, "itemAttemptBase").get(item, 0))
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
            entry["error"] = _short(error)
            if item is None:
                entry.update(phase="Retrying", nextRetryAt=due)
            else:
                self.item_map(task.name, "retryAt")[item] = due
            return
        self._dead_letter(task.name, item, attempt, error)

    def _dead_letter(self, name: str, item: int | None, attempts: int, error: str) -> None:
        entry = self.tasks[name]
        error = _short(error)
        letter: dict[str, Any] = {
            "task": name,
            "attempts": attempts,
            "error": error,
            "at": timestamps.text(self.now),
        }
        if item is None:
            entry.update(phase="DeadLettered", finishedAt=timestamps.text(self.now), error=error)
            entry.pop("nextRetryAt", None)
        else:
            letter["item"] = item
            dead = self.items(name, "deadItems")
            dead.add(item)
            entry["deadLettered"] = len(dead)
            # Its attempts stay in itemAttempts: a manual retry counts on from them.
            self.item_map(name, "itemAttempts")[item] = str(attempts)
        self.new_letters.append(letter)
        letters = self.status["deadLetters"]
        letters.append(letter)
        del letters[:-DEAD_LETTERS_KEPT]
        self.status["deadLetterCount"] = int(self.status.get("deadLetterCount") or 0) + 1

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
        if self._base_context is None:
            self._base_context = {
                "params": self.spec.params or {},
                "workflow": self.who.context,
                "tasks": self._task_outputs(),
            }
        if item is None:
            return self._base_context
        return {**self._base_context, "item": item}

    def _task_outputs(self) -> dict[str, Any]:
        """What templates see of the tasks that succeeded.  An output stored in Redis that was
        not given (Redis lost it, or it was too large to load) is left out: a template that
        reads it fails and names it."""
        outputs: dict[str, Any] = {}
        stored = {**self.stored_outputs, **self.fresh} if self.fresh else self.stored_outputs
        self.missing = set()
        for task in self.spec.tasks:
            entry = self.tasks[task.name]
            if entry["phase"] != "Succeeded":
                continue
            if task.for_each is None:
                if "outputRef" not in entry:
                    outputs[task.name] = {"output": entry.get("output")}
                    continue
                wanted: list[OutputId] = [(task.name, None)]
            else:
                wanted = [(task.name, index) for index in range(int(entry.get("items", 0)))]
            if all(key in stored for key in wanted):
                values = [stored[key] for key in wanted]
                outputs[task.name] = (
                    {"output": values[0]} if task.for_each is None else {"outputs": values}
                )
            else:
                outputs[task.name] = {}
                if task.name not in self.unavailable:
                    self.missing.add(task.name)
        return outputs

    def _why(self, task: Task, error: str) -> str:
        """A template error, with the reason when it read outputs that cannot be had."""
        gone = sorted(_reads(task) & self.unavailable)
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
        if self.missing and _reads(task) & self.missing:
            self.deferred = True
            return True
        return False

    def item_values(self, task: Task) -> list[Any]:
        """A forEach task's items: rendered again when the caller kept none (this operator
        restarted), and refused when they differ from the first rendering's."""
        entry = self.tasks[task.name]
        digest = entry.get("itemsDigest")
        kept = self.rendered.get(task.name)
        if kept is not None and kept[0] == digest:
            return kept[1]
        values = self._render_items(task)
        found = items_digest(values)
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
        """Enqueues one attempt; False when its templates cannot be rendered (dead-lettered)
        or it waits for outputs (nothing changes)."""
        entry = self.tasks[task.name]
        if self.waits(task):
            return False
        try:
            item_value = None if item is None else self.item_values(task)[item]
            action = self.render(task, item_value)
        except templating.TemplateError as error:
            self._dead_letter(task.name, item, attempt, self._why(task, f"template: {error}"))
            return False
        self.enqueue.append(self.message(task, item, attempt, action))
        entry.setdefault("startedAt", timestamps.text(self.now))
        if item is None:
            entry.update(phase="Queued", attempts=attempt)
            entry.pop("nextRetryAt", None)
        else:
            self.items(task.name, "runningItems").add(item)
            if attempt > 1:
                self.item_map(task.name, "itemAttempts")[item] = str(attempt)
        return True

    def expand(self, task: Task) -> None:
        """A ready forEach task: render its list, then its children wait to be launched."""
        entry = self.tasks[task.name]
        if self.waits(task):
            return
        entry.pop("itemsDigest", None)
        try:
            values = self.item_values(task)
        except templating.TemplateError as error:
            reason = self._why(task, str(error))
            self._dead_letter(
                task.name, None, 0, reason if reason.startswith("forEach") else f"forEach: {reason}"
            )
            return
        entry.update(
            phase="Running",
            items=len(values),
            itemsDigest=self.rendered[task.name][0],
            succeeded=0,
            failed=0,
            deadLettered=0,
            startedAt=timestamps.text(self.now),
        )

    def schedule(self) -> None:
        slots = self.spec.concurrency - self.in_flight()
        # Retries that are due go first.
        for task in self.spec.tasks:
            entry = self.tasks[task.name]
            if task.for_each is None and entry["phase"] == "Retrying":
                if slots > 0 and timestamps.parse(entry["nextRetryAt"]) <= self.now:
                    slots -= self.launch(task, None, int(entry.get("attempts", 1)) + 1)
            elif task.for_each is not None and "retryAt" in entry and slots > 0:
                retrying = self.item_map(task.name, "retryAt")
                attempts = self.item_map(task.name, "itemAttempts")
                when = {due: timestamps.parse(due) for due in set(retrying.values())}
                for item in sorted(i for i, due in retrying.items() if when[due] <= self.now):
                    if slots <= 0 or self.waits(task):
                        break
                    del retrying[item]
                    slots -= self.launch(task, item, int(attempts.get(item, 1)) + 1)
        for name in self.dag.order:
            task, entry = self.by_name[name], self.tasks[name]
            if entry["phase"] == "Pending":
                deps = [self.tasks[d]["phase"] for d in task.depends_on]
                if any(phase in ("DeadLettered", "Skipped") for phase in deps):
                    entry.update(phase="Skipped", finishedAt=timestamps.text(self.now))
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
            | set(self.item_map(task.name, "retryAt"))
        )
        item = int(entry.get("nextItem", 0))
        if self.waits(task):
            return slots
        while slots > 0 and item < int(entry["items"]):
            if item not in started:
                slots -= self.launch(task, item, 1)
            item += 1
        entry["nextItem"] = item
        return slots

    # phases ----------------------------------------------------------------------------------

    def settle(self) -> None:
        self._base_context = None
        for task in self.spec.tasks:
            entry = self.tasks[task.name]
            if task.for_each is None or entry["phase"] != "Running":
                continue
            total = int(entry["items"])
            done = len(self.items(task.name, "doneItems"))
            dead = len(self.items(task.name, "deadItems"))
            if done + dead < total:
                continue
            entry["finishedAt"] = timestamps.text(self.now)
            entry["phase"] = "Succeeded" if dead == 0 else "DeadLettered"
            entry.pop("nextItem", None)
            if dead == 0:  # a manual retry of dead children needs their items
                entry.pop("itemsDigest", None)
                self.item_map(task.name, "itemAttemptBase").clear()
                self.item_map(task.name, "itemAttempts").clear()
                self.rendered.pop(task.name, None)

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
                moments.append(timestamps.parse(entry["nextRetryAt"]))
            moments += [timestamps.parse(due) for due in entry.get("retryAt") or {}]
        deadline = self.deadline()
        if deadline is not None and self.status.get("phase") not in ("Succeeded", "Failed"):
            moments.append(deadline)
        return min(moments) if moments else None

    def deadline(self) -> datetime | None:
        started = self.status.get("startedAt")
        if self.spec.active_deadline_seconds is None or not started:
            return None
        return timestamps.parse(started) + timedelta(seconds=self.spec.active_deadline_seconds)

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
                    entry.update(phase="Skipped", finishedAt=timestamps.text(self.now))
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
            self.status.setdefault("finishedAt", timestamps.text(self.now))
        if phase != "Suspended" and self.enqueue:
            self.status.setdefault("startedAt", timestamps.text(self.now))
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


def secret_refs(spec: WorkflowSpec) -> list[tuple[str, str]]:
    """The (Secret, key) pairs the workflow's HTTP headers read; worker pods get them as env."""
    return sorted({ref for task in spec.tasks for ref in actions.secret_keys(task)})


def advance(
    spec: WorkflowSpec,
    status: Mapping[str, Any],
    results: Sequence[TaskResult],
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
    renderings)."""
    run = _Run(spec, status, now, who, rng or random.Random(), outputs, rendered, unavailable)
    if run.status.get("phase") not in ("Succeeded", "Failed"):
        for result in results:
            run.apply(result)
        run.settle()
        if not spec.suspend and not _deadline_passed(run):
            run.schedule()
            run.settle()
    run.conclude(generation)
    run.flush()
    if not fit(run.status):
        run.enqueue = []
        run.status.update(
            phase="Failed",
            message=(
                f"status would exceed {STATUS_LIMIT_BYTES // 1024} KiB: too many tasks, "
                "errors or dead letters to record"
            ),
        )
        for entry in run.tasks.values():
            if entry["phase"] not in FINISHED:
                entry.update(phase="Skipped", finishedAt=timestamps.text(now))
        run.conclude(generation)
        fit(run.status, last_resort=True)
    return Step(
        run.status,
        run.enqueue,
        run.wake_at(),
        wants_outputs=run.deferred,
        notices=notices.step_notices(run.phase_before, run.status, run.new_letters),
        dead_lettered=len(run.new_letters),
        finished_now=run.phase_before not in ("Succeeded", "Failed")
        and run.status["phase"] in ("Succeeded", "Failed"),
    )


def status_size(status: Mapping[str, Any]) -> int:
    """Bytes the status takes as the API server stores it (JSON)."""
    return _json_size(status)


def fit(status: dict[str, Any], *, last_resort: bool = False) -> bool:
    """Keeps status under STATUS_LIMIT_BYTES: when it is not, errors are cut to 80 characters
    and only the newest 5 dead letters stay listed (then, as a last resort, inline outputs go:
    their stored copies remain).  False when it still does not fit."""
    if status_size(status) < STATUS_LIMIT_BYTES:
        return True
    letters = status.get("deadLetters") or []
    del letters[:-5]
    for entry in [*status.get("tasks", {}).values(), *letters]:
        if isinstance(entry.get("error"), str):
            entry["error"] = _short(entry["error"], 80)
    if last_resort:
        for entry in status.get("tasks", {}).values():
            if "output" in entry:
                entry["output"] = {"truncated": True, "bytes": _json_size(entry["output"])}
        for entry in status.get("tasks", {}).values():
            for key in ("itemAttempts", "itemAttemptBase", "retryAt"):
                entry.pop(key, None)
    return status_size(status) < STATUS_LIMIT_BYTES


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


def _deadline_passed(run: _Run) -> bool:
    deadline = run.deadline()
    return deadline is not None and run.now >= deadline


def _reads(task: Task) -> frozenset[str]:
    """The tasks whose outputs the task's templates read (task references are literal, so this
    is exact; worked out once per distinct set of templates)."""
    return _sources_read(tuple(_template_sources(task)))


@functools.lru_cache(maxsize=4096)
def _sources_read(sources: tuple[str, ...]) -> frozenset[str]:
    found: set[str] = set()
    for source in sources:
        try:
            found |= templating.references(source).tasks
        except templating.TemplateError:
            found.add(_ANY_TASK)  # refused at admission; here it reads nothing it can name
    return frozenset(found)


_ANY_TASK = "*"


def _template_sources(task: Task) -> list[str]:
    sources = [] if task.for_each is None else [task.for_each]
    sources += [source for _, source in actions.templates(task, "")]
    return [source for source in sources if "{" in source]


def needed_outputs(spec: WorkflowSpec, status: Mapping[str, Any]) -> dict[str, int | None]:
    """The stored outputs templates may still read, as task → forEach children (None: a
    single task's own output): those of succeeded tasks that a task yet to finish reads, and
    whose output status does not inline.  Nothing else need be loaded."""
    tasks = status.get("tasks") or {}
    by_name = {task.name: task for task in spec.tasks}
    needed: dict[str, int | None] = {}
    for task in spec.tasks:
        if (tasks.get(task.name) or {}).get("phase", "Pending") in FINISHED:
            continue
        for name in _reads(task):
            entry = tasks.get(name) or {}
            if name not in by_name or entry.get("phase") != "Succeeded":
                continue
            if by_name[name].for_each is not None:
                needed[name] = int(entry.get("items", 0))
            elif "outputRef" in entry:
                needed[name] = None
    return needed


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
    run = _Run(spec, status, now, who, random.Random(), outputs, rendered)
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
