"""Task templates: a jinja2 sandbox with strict undefined, checked at apply time.

A template may use `params`, `workflow` (name, namespace, uid), `item` (only in a task with
`forEach`, and not in the `forEach` expression itself) and `tasks.<name>` (or `tasks['name']`)
only for ancestors of the task.  Unknown names, references to other tasks, attribute names
starting with `_` (the way into Python internals: `''.__class__.__mro__`) and syntax errors are
refused when the workflow is applied; the sandbox refuses the same at render time.

Text fields (URLs, headers, argv) render to strings, with lists and dicts as JSON; value fields
(`forEach`, python kwargs) render to native values, so `{{ tasks.a.output.ids }}` is a list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.nativetypes import NativeCodeGenerator, NativeTemplate, native_concat
from jinja2.sandbox import ImmutableSandboxedEnvironment

NAMES = frozenset({"params", "workflow", "item", "tasks"})


def _finalize(value: Any) -> Any:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else value


class _TextSandbox(ImmutableSandboxedEnvironment):
    pass


class _NativeSandbox(ImmutableSandboxedEnvironment):
    code_generator_class = NativeCodeGenerator
    concat = staticmethod(native_concat)  # type: ignore[assignment]
    template_class = NativeTemplate


_TEXT = _TextSandbox(undefined=jinja2.StrictUndefined, finalize=_finalize, autoescape=False)
_NATIVE = _NativeSandbox(undefined=jinja2.StrictUndefined, autoescape=False)


class TemplateError(ValueError):
    """A template that cannot be rendered: syntax, an unknown name, a sandbox refusal."""


def render_text(source: str, context: Mapping[str, Any]) -> str:
    try:
        return _TEXT.from_string(source).render(context)
    except jinja2.TemplateError as error:
        raise TemplateError(f"{source!r}: {error}") from error


def render_value(source: str, context: Mapping[str, Any]) -> Any:
    try:
        value = _NATIVE.from_string(source).render(context)
        if isinstance(value, jinja2.Undefined):
            # A lone expression comes back as the object itself, unrendered: make an undefined
            # one fail here as it would inside text.
            str(value)
        return value
    except jinja2.TemplateError as error:
        raise TemplateError(f"{source!r}: {error}") from error


@dataclass(frozen=True)
class Reference:
    """What a template refers to: top-level names and the tasks it reads."""

    names: frozenset[str]
    tasks: frozenset[str]


def references(source: str) -> Reference:
    """The names and task references of a template; raises TemplateError on what is refused."""
    try:
        tree = _TEXT.parse(source)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(
            f"template syntax error: {error.message} (line {error.lineno})"
        ) from error
    names = frozenset(meta.find_undeclared_variables(tree))
    unknown = sorted(names - NAMES)
    if unknown:
        raise TemplateError(
            f"unknown name {unknown[0]!r} (templates may use {', '.join(sorted(NAMES))})"
        )
    tasks: set[str] = set()
    for node in _walk(tree):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            raise TemplateError(f"attribute {node.attr!r} is not allowed in templates")
        if (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and str(node.arg.value).startswith("_")
        ):
            raise TemplateError(f"item {node.arg.value!r} is not allowed in templates")
        if isinstance(node, nodes.Filter) and node.name == "attr":
            raise TemplateError("the attr filter is not allowed in templates")
        if isinstance(node, nodes.Name) and node.name == "tasks" and node.ctx == "load":
            raise TemplateError(
                "`tasks` must be followed by a task name, e.g. tasks.fetch or tasks['fetch']"
            )
        task = _task_reference(node)
        if task is not None:
            tasks.add(task)
    return Reference(names, frozenset(tasks))


def _is_task_reference(node: nodes.Node) -> bool:
    """`tasks.name` or `tasks[...]`."""
    return (
        isinstance(node, (nodes.Getattr, nodes.Getitem))
        and isinstance(node.node, nodes.Name)
        and node.node.name == "tasks"
    )


def _task_reference(node: nodes.Node) -> str | None:
    if not _is_task_reference(node):
        return None
    if isinstance(node, nodes.Getattr):
        return node.attr
    assert isinstance(node, nodes.Getitem)
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    raise TemplateError("task references must name the task literally, e.g. tasks['fetch']")


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    """Every node, without descending into task references (their `tasks` Name is fine)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if not _is_task_reference(current):
            stack.extend(current.iter_child_nodes())
