"""Which stored outputs a workflow's templates read, so that the driver loads only those
(SPEC: a large output is loaded only when a template needs it)."""

from __future__ import annotations

import functools

from treadle.api.workflows import Task, WorkflowSpec, WorkflowStatus
from treadle.core import actions, templating
from treadle.core.runstate import FINISHED


def reads(task: Task) -> frozenset[str]:
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
    sources = [source for source in (task.for_each, task.when) if source is not None]
    sources += [source for _, source in actions.templates(task, "")]
    return [source for source in sources if "{" in source]


def needed_outputs(spec: WorkflowSpec, status: WorkflowStatus) -> dict[str, int | None]:
    """The stored outputs templates may still read, as task → forEach children (None: a
    single task's own output): those of succeeded tasks that a task yet to finish reads, and
    whose output status does not inline.  Nothing else need be loaded."""
    tasks = status.tasks
    by_name = {task.name: task for task in spec.all_tasks}
    needed: dict[str, int | None] = {}
    for task in spec.all_tasks:
        own = tasks.get(task.name)
        if own is not None and own.phase in FINISHED:
            continue
        for name in reads(task):
            entry = tasks.get(name)
            if name not in by_name or entry is None or entry.phase != "Succeeded":
                continue
            if by_name[name].for_each is not None:
                needed[name] = entry.items or 0
            elif entry.output_ref is not None:
                needed[name] = None
    return needed
