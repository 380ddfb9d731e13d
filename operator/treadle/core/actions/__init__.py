"""Action kinds: what a task does.  Each kind is one module here (its templated fields, how it
renders into a task message, its breaker target, the Secrets it reads, where its runner is),
and KINDS lists each once; everything else asks this registry, never a kind's name.

The kinds' spec models are the Task fields of treadle.api.workflows (ACTIONS), since the CRD
schema is generated from those models.  Adding a kind: its model and Task field, a module
here, its line in KINDS, its runner in treadle.worker.runners.  tests/unit/core/test_actions
fails when one part is missing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from treadle.api.workflows import Task
from treadle.core.actions import command, http, job, python
from treadle.core.actions._base import ActionKind, render_strings, strings_in

__all__ = ["KINDS", "ActionKind", "render_strings", "strings_in"]

KINDS: dict[str, ActionKind] = {
    kind.name: kind for kind in (command.KIND, http.KIND, python.KIND, job.KIND)
}


def of(task: Task) -> tuple[ActionKind, Any]:
    """The task's one action: its kind and its spec."""
    name, spec = task.action
    return KINDS[name], spec


def templates(task: Task, path: str) -> Iterator[tuple[str, str]]:
    """The templated fields of a task's action (not its forEach), as (field path, source)."""
    kind, spec = of(task)
    return kind.templates(spec, f"{path}.{kind.name}")


def render(task: Task, context: Mapping[str, Any]) -> dict[str, Any]:
    """The task's action as its message carries it: `{kind: rendered spec}`."""
    kind, spec = of(task)
    return {kind.name: kind.render(spec, context)}


def problems(task: Task, path: str) -> list[str]:
    """What the schema cannot check of the task's action, each naming its field."""
    kind, spec = of(task)
    return kind.problems(spec, f"{path}.{kind.name}")


def own_pod(task: Task) -> bool:
    """Whether the task's attempts run in pods of their own (Jobs), not on workers."""
    return of(task)[0].own_pod


OWN_POD_FIELDS = frozenset(name for name, kind in KINDS.items() if kind.own_pod)
"""The action fields of a task whose attempts run in pods of their own (`job`)."""


def raw_own_pod(raw_task: Mapping[str, Any]) -> bool:
    """Whether an unparsed task's action runs in pods of its own."""
    return any(name in raw_task for name in OWN_POD_FIELDS)


def own_pod_action(action: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The rendered spec of a message's action when it runs in a pod of its own, else None."""
    for name, rendered in action.items():
        kind = KINDS.get(name)
        if kind is not None and kind.own_pod and isinstance(rendered, Mapping):
            return rendered
    return None


def target(action: Mapping[str, Any], task: str) -> str:
    """The breaker and rate-limit target of a rendered action (a message's)."""
    for name, rendered in action.items():
        kind = KINDS.get(name)
        if kind is not None and isinstance(rendered, Mapping):
            return kind.target(rendered, task)
    return f"task:{task}"


def secret_keys(task: Task) -> Iterator[tuple[str, str]]:
    kind, spec = of(task)
    return kind.secret_keys(spec)


def secrets_named(raw_task: Any, path: str) -> Iterator[tuple[str, str]]:
    """The Secrets an unparsed task names, with their field paths."""
    if not isinstance(raw_task, Mapping):
        return
    for name, kind in KINDS.items():
        raw = raw_task.get(name)
        if isinstance(raw, Mapping):
            yield from kind.secrets_named(raw, f"{path}.{name}")
