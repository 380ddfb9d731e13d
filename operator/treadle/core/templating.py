"""Task templates: checked at apply time, rendered in a bounded jinja2 sandbox (core.sandbox).

A template may use `params`, `workflow` (name, namespace, uid), `item` (only in a task with
`forEach`, and not in the `forEach` expression itself) and `tasks.<name>` (or `tasks['name']`)
only for ancestors of the task.  Unknown names, references to other tasks, attribute names
starting with `_` (the way into Python internals: `''.__class__.__mro__`) and syntax errors are
refused when the workflow is applied; the sandbox refuses the same at render time.

Text fields (URLs, headers, argv) render to strings, with lists and dicts as JSON; value fields
(`forEach`, python kwargs) render to native values, so `{{ tasks.a.output.ids }}` is a list.

Templates are user input evaluated inside the operator, so nothing in them may cost more than a
bound (SPEC, Limits and bad input; docs/decisions.md, "Bounded templates"):

- nothing is evaluated while a template is checked or compiled: every arithmetic operator is
  intercepted (jinja's optimizer then cannot fold `'a' * 10**9`) and every filter takes the
  render context (which the optimizer never folds); constant sub-expressions are then evaluated
  on purpose, through the same bounded operators, so an impossible constant is refused at apply
  time;
- every operator, filter, method call and concatenation checks the size of its result *before*
  making it (at most `MAX_VALUE_CHARS` characters or items), and charges what it made to the
  render's allocation budget;
- every loop iteration, call and operator is a step; a render has a step budget and a CPU-time
  budget (the thread's own CPU clock), and `range` is capped;
- macros, includes, imports, recursive loops and block captures (`{% set %}...{% endset %}`,
  `{% filter %}`) are refused: task templates need none of them, and each is a way around the
  bounds above;
- a rendered field is at most `MAX_OUTPUT_CHARS` characters.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import jinja2
from jinja2 import meta, nodes
from jinja2.nativetypes import native_concat

from treadle.core import sandbox
from treadle.core.sandbox import (
    MAX_OUTPUT_CHARS,
    MAX_SOURCE_CHARS,
    NAMES,
    Budget,
    TemplateError,
    TemplateLimit,
)

__all__ = [
    "MAX_OUTPUT_CHARS",
    "MAX_SOURCE_CHARS",
    "NAMES",
    "Budget",
    "Reference",
    "TemplateError",
    "TemplateLimit",
    "references",
    "render_text",
    "render_value",
]

# --- checking and compiling ------------------------------------------------------------------


def _parse(environment: sandbox.Bounded, source: str) -> nodes.Template:
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateLimit(f"template of {len(source)} characters (at most {MAX_SOURCE_CHARS})")
    try:
        tree = environment.parse(source)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(
            f"template syntax error: {error.message} (line {error.lineno})"
        ) from error
    for node in tree.find_all(nodes.Node):
        refused = sandbox.REFUSED_NODES.get(type(node))
        if refused is not None:
            verb = "are" if refused.endswith("blocks") else "is"
            raise TemplateError(f"{refused} {verb} not allowed in templates")
        if isinstance(node, nodes.For) and node.recursive:
            raise TemplateError("recursive loops are not allowed in templates")
    return tree


def _guarded(tree: nodes.Template) -> nodes.Template:
    """Routes every loop and every `~` through the guards (the parse tree is the source of
    truth; this only wraps nodes)."""
    for loop in list(tree.find_all(nodes.For)):
        loop.iter = _guard_call(sandbox.LOOP, [cast(nodes.Expr, loop.iter)], loop.lineno)
    for parent in [tree, *tree.find_all(nodes.Node)]:
        for field_name in parent.fields:
            child = getattr(parent, field_name, None)
            if isinstance(child, nodes.Concat):
                setattr(parent, field_name, _guard_call(sandbox.CONCAT, child.nodes, child.lineno))
            elif isinstance(child, list):
                # In place: a guard made earlier may hold this very list as its arguments.
                child[:] = [
                    _guard_call(sandbox.CONCAT, item.nodes, item.lineno)
                    if isinstance(item, nodes.Concat)
                    else item
                    for item in child
                ]
    return tree


def _guard_call(name: str, arguments: list[nodes.Expr], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.Name(name, "load", lineno=lineno), arguments, [], None, None,
                      lineno=lineno)  # fmt: skip


@functools.lru_cache(maxsize=1024)
def _compiled(native: bool, source: str) -> jinja2.Template:
    environment = sandbox.NATIVE if native else sandbox.TEXT
    tree = _guarded(_parse(environment, source))
    return environment.from_string(tree)


def _render(native: bool, source: str, context: Mapping[str, Any], budget: Budget | None) -> Any:
    try:
        template = _compiled(native, source)
    except TemplateError as error:
        raise type(error)(f"{source!r:.200}: {error}") from error
    token = sandbox.BUDGET.set(budget or Budget())
    try:
        chunks: list[Any] = []
        size = 0
        for chunk in template.root_render_func(template.new_context(dict(context))):
            chunks.append(chunk)
            size += len(chunk) if isinstance(chunk, str) else 0
            if size > MAX_OUTPUT_CHARS:
                raise TemplateLimit(f"renders to more than {MAX_OUTPUT_CHARS} characters")
        if native:
            return native_concat(chunks)
        return "".join(str(chunk) for chunk in chunks)
    except TemplateError as error:
        raise type(error)(f"{source!r:.200}: {error}") from error
    except jinja2.TemplateError as error:
        raise TemplateError(f"{source!r:.200}: {error}") from error
    except RecursionError as error:
        raise TemplateLimit(f"{source!r:.200}: nested too deeply") from error
    except Exception as error:  # a user's expression failed: 1/0, a bad filter argument
        raise TemplateError(f"{source!r:.200}: {type(error).__name__}: {error}") from error
    finally:
        sandbox.BUDGET.reset(token)


def render_text(source: str, context: Mapping[str, Any], *, budget: Budget | None = None) -> str:
    return str(_render(False, source, context, budget))


def render_value(source: str, context: Mapping[str, Any], *, budget: Budget | None = None) -> Any:
    value = _render(True, source, context, budget)
    if isinstance(value, jinja2.Undefined):
        # A lone expression comes back as the object itself, unrendered: make an undefined one
        # fail here as it would inside text.
        try:
            str(value)
        except jinja2.TemplateError as error:
            raise TemplateError(f"{source!r:.200}: {error}") from error
    return value


@dataclass(frozen=True)
class Reference:
    """What a template refers to: top-level names and the tasks it reads."""

    names: frozenset[str]
    tasks: frozenset[str]


def references(source: str) -> Reference:
    """The names and task references of a template; raises TemplateError on what is refused,
    TemplateLimit on a constant part that crosses a bound."""
    tree = _parse(sandbox.TEXT, source)
    for used in tree.find_all(nodes.Filter):
        if used.name in sandbox.LEFT_OUT:
            raise TemplateError(f"the {used.name} filter is not allowed in templates")
    try:
        names = frozenset(meta.find_undeclared_variables(tree))
    except jinja2.TemplateAssertionError as error:  # an unknown filter or test
        raise TemplateError(f"{error.message} (line {error.lineno})") from error
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
        if isinstance(node, nodes.Name) and node.name == "tasks" and node.ctx == "load":
            raise TemplateError(
                "`tasks` must be followed by a task name, e.g. tasks.fetch or tasks['fetch']"
            )
        task = _task_reference(node)
        if task is not None:
            tasks.add(task)
    _check_constants(tree)
    return Reference(names, frozenset(tasks))


def _check_constants(tree: nodes.Template) -> None:
    """Evaluates, through the bounded operators, every outermost expression built only of
    literals, so `{{ 'a' * 10**9 }}` is refused when it is applied, not when it runs."""
    token = sandbox.BUDGET.set(Budget())
    try:
        stack: list[nodes.Node] = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, nodes.Expr):
                _try_constant(node)  # checks its constant parts itself
            else:
                stack.extend(node.iter_child_nodes())
    finally:
        sandbox.BUDGET.reset(token)


class _NotConstant(Exception):
    pass


def _constant(node: nodes.Node) -> Any:
    """The value of a literal-only expression, or _NotConstant; crossing a bound raises."""
    if isinstance(node, nodes.TemplateData):
        return node.data
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return [_constant(item) for item in node.items]
    if isinstance(node, nodes.BinExpr):
        left, right = _try_constant(node.left), _try_constant(node.right)
        if left is _MISSING or right is _MISSING:
            raise _NotConstant
        return sandbox.bounded_binop(node.operator, left, right)
    if isinstance(node, nodes.Concat):
        parts = [_try_constant(part) for part in node.nodes]
        if any(part is _MISSING for part in parts):
            raise _NotConstant
        return sandbox.concat_guard(*parts)
    if isinstance(node, nodes.Filter) and node.node is not None and not node.dyn_args:
        value = _try_constant(node.node)
        args = [_try_constant(arg) for arg in node.args]
        kwargs = {str(pair.key): _try_constant(pair.value) for pair in node.kwargs}
        if value is _MISSING or _MISSING in args or _MISSING in kwargs.values():
            raise _NotConstant
        amplifier = sandbox.AMPLIFIERS.get(node.name)
        if amplifier is not None:
            sandbox.within(amplifier(value, tuple(args), kwargs), f"the {node.name} filter")
        raise _NotConstant  # checked its bound; the filter itself runs only when rendered
    if (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "range"
    ):
        args = [_try_constant(arg) for arg in node.args]
        if _MISSING not in args and all(isinstance(arg, int) for arg in args):
            return sandbox.bounded_range(*args)
    raise _NotConstant


_MISSING = object()


def _try_constant(node: nodes.Node) -> Any:
    try:
        return _constant(node)
    except _NotConstant:
        # Not constant as a whole, but its own constant parts are still checked.
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.Expr):
                _try_constant(child)
        return _MISSING


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
