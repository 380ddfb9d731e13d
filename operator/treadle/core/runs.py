"""One call of the workflow engine: its working state over a copy of status, the results it
applies, and the phases it concludes.  Scheduling (what to launch) builds on it in
treadle.core.scheduling; treadle.core.engine is the entry point."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from treadle.api import workflows
from treadle.api.workflows import Task, WorkflowSpec
from treadle.core import backoff, budget, conditions, dags, patches, ranges, timestamps
from treadle.core.messages import TaskMessage, TaskResult

FINISHED = ("Succeeded", "DeadLettered", "Skipped")
IN_FLIGHT = ("Queued", "Running")
OutputId = tuple[str, int | None]
"""A stored output: (task, forEach child index or None)."""


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


def due_text(moment: datetime) -> str:
    """A retry time, rounded up to the second status can hold: never earlier than asked."""
    whole = moment.replace(microsecond=0)
    return timestamps.text(whole if whole == moment else whole + timedelta(seconds=1))


def items_digest(values: list[Any]) -> str:
    """Names a forEach task's rendered items, so a second rendering is known to agree."""
    encoded = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def settings_of(spec: WorkflowSpec, task: Task) -> workflows.TaskSettings:
    defaults = spec.defaults
    return workflows.TaskSettings(
        timeout_seconds=task.timeout_seconds or defaults.timeout_seconds,
        retry=task.retry or defaults.retry or workflows.RetryPolicy(),
        circuit_breaker=task.circuit_breaker or defaults.circuit_breaker,
        rate_limit=task.rate_limit or defaults.rate_limit,
    )


class RunState:
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
                budget.json_size(entry["output"])
                for entry in self.tasks.values()
                if "output" in entry
            )
        return budget.INLINE_BUDGET_BYTES - self._inline_used

    def keep_output(self, entry: dict[str, Any], result: TaskResult) -> None:
        """A single task's output: inline while the workflow's inline budget lasts, else the
        reference to its stored copy (a copy that came with the result still serves this
        call's templates)."""
        entry.pop("output", None)
        entry.pop("outputRef", None)
        has_copy = result.output_ref is None or result.output is not None
        size = budget.json_size(result.output) if has_copy else 0
        if result.output_ref is not None and (not has_copy or size > self.inline_left()):
            entry["outputRef"] = result.output_ref
            if has_copy:
                self.fresh[(result.task, result.item)] = result.output
            return
        # Inline: within the budget, or from a worker that stored nothing (cut when too large).
        entry["output"] = result.output
        if size > budget.OUTPUT_LIMIT_BYTES:
            entry["output"] = {"truncated": True, "bytes": size}
            size = budget.json_size(entry["output"])
        used = budget.INLINE_BUDGET_BYTES - self.inline_left()
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
        retry = settings_of(self.spec, task).retry
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
            due = due_text(self.now + timedelta(seconds=wait))
            entry["error"] = budget.short(error)
            if item is None:
                entry.update(phase="Retrying", nextRetryAt=due)
            else:
                self.item_map(task.name, "retryAt")[item] = due
            return
        self.dead_letter(task.name, item, attempt, error)

    def dead_letter(self, name: str, item: int | None, attempts: int, error: str) -> None:
        entry = self.tasks[name]
        error = budget.short(error)
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
        del letters[: -budget.DEAD_LETTERS_KEPT]
        self.status["deadLetterCount"] = int(self.status.get("deadLetterCount") or 0) + 1

    # state -----------------------------------------------------------------------------------

    def in_flight(self) -> int:
        count = 0
        for task in self.spec.tasks:
            entry = self.tasks[task.name]
            if task.for_each is None:
                count += entry["phase"] in IN_FLIGHT
            else:
                count += len(self.items(task.name, "runningItems"))
        return count

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
