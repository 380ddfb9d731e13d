"""Task templates: a bounded jinja2 sandbox with strict undefined, checked at apply time.

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
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast

import jinja2
from jinja2 import filters as jinja_filters
from jinja2 import meta, nodes
from jinja2.nativetypes import NativeCodeGenerator, NativeTemplate, native_concat
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

NAMES = frozenset({"params", "workflow", "item", "tasks"})

MAX_OUTPUT_CHARS = 64 * 1024
"""A rendered text field, and any string or list a template makes along the way."""
MAX_VALUE_CHARS = MAX_OUTPUT_CHARS
MAX_ALLOCATED = 4 * 1024 * 1024
"""Characters (or list items) made by all of one render's operations together."""
MAX_STEPS = 100_000
"""Loop iterations, calls, filters and operators of one render."""
MAX_CPU_SECONDS = 0.1
MAX_RANGE = 10_000
MAX_INT_BITS = 4096
MAX_SOURCE_CHARS = 16 * 1024

_LOOP = "treadle_loop__"
_CONCAT = "treadle_concat__"

_REFUSED_NODES: dict[type[nodes.Node], str] = {
    nodes.Macro: "{% macro %}",
    nodes.CallBlock: "{% call %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Include: "{% include %}",
    nodes.Extends: "{% extends %}",
    nodes.Block: "{% block %}",
    nodes.AssignBlock: "{% set %}...{% endset %} blocks",
    nodes.FilterBlock: "{% filter %} blocks",
}


class TemplateError(ValueError):
    """A template that cannot be rendered: syntax, an unknown name, a sandbox refusal."""


class TemplateLimit(TemplateError):
    """A template that would cross one of the bounds above."""


@dataclass
class Budget:
    """What one render may still spend; `cpu_clock` is the calling thread's CPU time."""

    steps: int = MAX_STEPS
    allocated: int = MAX_ALLOCATED
    cpu_seconds: float = MAX_CPU_SECONDS
    cpu_clock: Callable[[], float] = time.thread_time
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.cpu_clock()

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise TemplateLimit(f"template takes more than {MAX_STEPS} steps")
        # Reading a thread's CPU clock is a system call: look every 32 steps (each is small).
        if self.steps % 32 == 0 and self.cpu_clock() - self.started > self.cpu_seconds:
            raise TemplateLimit(
                f"template takes more than {int(self.cpu_seconds * 1000)} ms of CPU"
            )

    def charge(self, value: Any) -> Any:
        size = _size(value)
        if size > MAX_VALUE_CHARS:
            raise TemplateLimit(f"template makes a value of {size} characters or items "
                                f"(at most {MAX_VALUE_CHARS})")  # fmt: skip
        self.allocated -= size
        if self.allocated < 0:
            raise TemplateLimit(
                f"template makes more than {MAX_ALLOCATED} characters or items in all"
            )
        return value


_BUDGET: ContextVar[Budget | None] = ContextVar("treadle_template_budget", default=None)


def _budget() -> Budget:
    found = _BUDGET.get()
    if found is None:  # a bounded call outside render_*: give it a budget of its own
        found = Budget()
        _BUDGET.set(found)
    return found


def _size(value: Any) -> int:
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        return len(value)
    return 0


def _within(size: int, what: str) -> None:
    """Refuses to make a value of `size` characters or items, before it is made."""
    if size > MAX_VALUE_CHARS:
        raise TemplateLimit(f"{what} would make {size} characters or items "
                            f"(at most {MAX_VALUE_CHARS})")  # fmt: skip


def _bits(value: Any) -> int:
    return abs(int(value)).bit_length() if isinstance(value, int) else 64


# --- operators -------------------------------------------------------------------------------


def _bounded_binop(operator: str, left: Any, right: Any) -> Any:
    budget = _budget()
    budget.step()
    _check_binop(operator, left, right)
    try:
        result = _OPERATORS[operator](left, right)
    except (ArithmeticError, TypeError, ValueError) as error:
        raise TemplateError(f"{operator!r}: {error}") from error
    return budget.charge(result)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuses an operation whose result would cross a bound, before it is computed."""
    sequence = (str, list, tuple)
    both_ints = isinstance(left, int) and isinstance(right, int)
    if operator == "*" and isinstance(left, sequence) and isinstance(right, int):
        _within(len(left) * max(right, 0), "'*'")
    elif operator == "*" and isinstance(right, sequence) and isinstance(left, int):
        _within(len(right) * max(left, 0), "'*'")
    elif operator == "*" and both_ints and _bits(left) + _bits(right) > MAX_INT_BITS:
        raise TemplateLimit(f"'*' would make a number over {MAX_INT_BITS} bits")
    elif operator == "**" and both_ints and abs(left) > 1 and right > 0:
        if _bits(left) * right > MAX_INT_BITS:
            raise TemplateLimit(f"'**' would make a number over {MAX_INT_BITS} bits")
    elif operator == "+" and isinstance(left, sequence) and isinstance(right, sequence):
        _within(len(left) + len(right), "'+'")
    elif operator == "%" and isinstance(left, (str, bytes)):
        raise TemplateError("'%' string formatting is not allowed in templates (use ~ or format)")


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "//": lambda a, b: a // b,
    "**": lambda a, b: a**b,
    "%": lambda a, b: a % b,
}


def _loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for value in iterable:
        budget.step()
        yield value


def _concat_guard(*parts: Any) -> str:
    budget = _budget()
    budget.step()
    texts = [str(part) for part in parts]
    _within(sum(len(text) for text in texts), "'~'")
    return str(budget.charge("".join(texts)))


def _range(*args: int) -> range:
    _budget().step()
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateLimit(f"range() of {len(numbers)} numbers (at most {MAX_RANGE})")
    return numbers


# --- filters ---------------------------------------------------------------------------------

# The amplifying filters' size arguments, checked before the filter runs: name -> a function of
# (value, args, kwargs) giving the largest result it can make.
_FORMAT_WIDTH = re.compile(r"%[-+ #0]*(?:\*|\d{5,})|%[-+ #0]*\d*\.(?:\*|\d{5,})")


def _lines(value: Any) -> int:
    return str(value).count("\n") + 1


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _int_arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> int:
    value = _arg(args, kwargs, index, name)
    return value if isinstance(value, int) else 0


def _format_bound(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    if _FORMAT_WIDTH.search(str(value)):
        raise TemplateLimit("format: widths and precisions of 5 digits or more are not allowed")
    return len(str(value)) + sum(len(str(arg)) for arg in (*args, *kwargs.values()))


def _replace_bound(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    text, old, new = (
        str(value),
        str(_arg(args, kwargs, 0, "old")),
        str(_arg(args, kwargs, 1, "new")),
    )
    count = text.count(old) if old else len(text) + 1
    return len(text) + count * len(new)


def _indent_bound(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    width = _arg(args, kwargs, 0, "width")
    pad = len(width) if isinstance(width, str) else (width if isinstance(width, int) else 4)
    return len(str(value)) + _lines(value) * pad


_AMPLIFIERS: dict[str, Callable[[Any, tuple[Any, ...], Mapping[str, Any]], int]] = {
    "center": lambda v, a, k: max(len(str(v)), _int_arg(a, k, 0, "width")),
    "format": _format_bound,
    "replace": _replace_bound,
    "indent": _indent_bound,
    "wordwrap": lambda v, a, k: max(len(str(v)) * 2, _int_arg(a, k, 0, "width")),
    "truncate": lambda v, a, k: len(str(v)) + len(str(_arg(a, k, 2, "end") or "")),
    "tojson": lambda v, a, k: _int_arg(a, k, 0, "indent"),
    "batch": lambda v, a, k: _int_arg(a, k, 0, "linecount"),
    "slice": lambda v, a, k: _int_arg(a, k, 0, "slices"),
    "join": lambda v, a, k: len(str(_arg(a, k, 0, "d") or "")) * _size(v),
}
_LEFT_OUT = frozenset({"random", "attr", "pprint"})
"""random: a render must give the same result every time; attr: the way around `_` names."""


def _bounded_filter(name: str, implementation: Callable[..., Any]) -> Callable[..., Any]:
    amplifier = _AMPLIFIERS.get(name)
    wants = jinja2.utils._PassArg.from_obj(implementation)

    @jinja2.pass_context
    def bounded(context: jinja2.runtime.Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step()
        if amplifier is not None:
            _within(amplifier(value, args, kwargs), f"the {name} filter")
        if wants is jinja2.utils._PassArg.context:
            result = implementation(context, value, *args, **kwargs)
        elif wants is jinja2.utils._PassArg.eval_context:
            result = implementation(context.eval_ctx, value, *args, **kwargs)
        elif wants is jinja2.utils._PassArg.environment:
            result = implementation(context.environment, value, *args, **kwargs)
        else:
            result = implementation(value, *args, **kwargs)
        return budget.charge(result)

    return bounded


# --- method calls ----------------------------------------------------------------------------

_STR_METHODS = frozenset(
    [
        "capitalize",
        "casefold",
        "count",
        "endswith",
        "find",
        "index",
        "isalnum",
        "isalpha",
        "isdigit",
        "islower",
        "isspace",
        "istitle",
        "isupper",
        "lower",
        "lstrip",
        "partition",
        "removeprefix",
        "removesuffix",
        "rfind",
        "rindex",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "upper",
        "replace",
        "join",
    ]
)
_METHODS: dict[type, frozenset[str]] = {
    str: _STR_METHODS,
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    LoopContext: frozenset({"cycle", "changed"}),
}


def _method_bound(owner: Any, name: str, args: tuple[Any, ...]) -> int:
    if isinstance(owner, str) and name == "replace":
        return _replace_bound(owner, args, {})
    if isinstance(owner, str) and name == "join" and args:
        items = list(args[0])
        return sum(len(str(item)) for item in items) + len(owner) * len(items)
    return 0


class _Bounded(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(_OPERATORS)
    intercepted_unops = frozenset({"-", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(
            undefined=jinja2.StrictUndefined, autoescape=False, optimized=False, **options
        )
        self.filters = {
            name: _bounded_filter(name, implementation)
            for name, implementation in jinja_filters.FILTERS.items()
            if name not in _LEFT_OUT
        }
        self.globals = {
            "range": _range,
            "dict": dict,
            "namespace": jinja2.utils.Namespace,
            _LOOP: _loop_guard,
            _CONCAT: _concat_guard,
        }
        self._callables = frozenset(id(value) for value in self.globals.values())

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        return _bounded_binop(operator, left, right)

    def call_unop(self, context: jinja2.runtime.Context, operator: str, arg: Any) -> Any:
        _budget().step()
        try:
            return -arg if operator == "-" else +arg
        except TypeError as error:
            raise TemplateError(f"{operator!r}: {error}") from error

    def call(
        self, context: jinja2.runtime.Context, function: Any, /, *args: Any, **kwargs: Any
    ) -> Any:
        budget = _budget()
        budget.step()
        owner = getattr(function, "__self__", None)
        name = getattr(function, "__name__", "")
        if id(function) in self._callables:
            pass
        elif owner is not None and name in _METHODS.get(type(owner), frozenset()):
            _within(_method_bound(owner, name, args), f".{name}()")
        else:
            shown = name or type(function).__name__
            raise TemplateError(f"calling {shown!r} is not allowed in templates")
        return budget.charge(super().call(context, function, *args, **kwargs))

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        if isinstance(argument, slice):
            _budget().charge(value)
        return value


def _finalize(value: Any) -> Any:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else value


class _TextSandbox(_Bounded):
    pass


class _NativeSandbox(_Bounded):
    code_generator_class = NativeCodeGenerator
    concat = staticmethod(native_concat)  # type: ignore[assignment]
    template_class = NativeTemplate


_TEXT = _TextSandbox(finalize=_finalize)
_NATIVE = _NativeSandbox()


# --- checking and compiling ------------------------------------------------------------------


def _parse(environment: _Bounded, source: str) -> nodes.Template:
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateLimit(f"template of {len(source)} characters (at most {MAX_SOURCE_CHARS})")
    try:
        tree = environment.parse(source)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(
            f"template syntax error: {error.message} (line {error.lineno})"
        ) from error
    for node in tree.find_all(nodes.Node):
        refused = _REFUSED_NODES.get(type(node))
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
        loop.iter = _guard_call(_LOOP, [cast(nodes.Expr, loop.iter)], loop.lineno)
    for parent in [tree, *tree.find_all(nodes.Node)]:
        for field_name in parent.fields:
            child = getattr(parent, field_name, None)
            if isinstance(child, nodes.Concat):
                setattr(parent, field_name, _guard_call(_CONCAT, child.nodes, child.lineno))
            elif isinstance(child, list):
                # In place: a guard made earlier may hold this very list as its arguments.
                child[:] = [
                    _guard_call(_CONCAT, item.nodes, item.lineno)
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
    environment = _NATIVE if native else _TEXT
    tree = _guarded(_parse(environment, source))
    return environment.from_string(tree)


def _render(native: bool, source: str, context: Mapping[str, Any], budget: Budget | None) -> Any:
    try:
        template = _compiled(native, source)
    except TemplateError as error:
        raise type(error)(f"{source!r:.200}: {error}") from error
    token = _BUDGET.set(budget or Budget())
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
        _BUDGET.reset(token)


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
    tree = _parse(_TEXT, source)
    for used in tree.find_all(nodes.Filter):
        if used.name in _LEFT_OUT:
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
    token = _BUDGET.set(Budget())
    try:
        stack: list[nodes.Node] = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, nodes.Expr):
                _try_constant(node)  # checks its constant parts itself
            else:
                stack.extend(node.iter_child_nodes())
    finally:
        _BUDGET.reset(token)


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
        return _bounded_binop(node.operator, left, right)
    if isinstance(node, nodes.Concat):
        parts = [_try_constant(part) for part in node.nodes]
        if any(part is _MISSING for part in parts):
            raise _NotConstant
        return _concat_guard(*parts)
    if isinstance(node, nodes.Filter) and node.node is not None and not node.dyn_args:
        value = _try_constant(node.node)
        args = [_try_constant(arg) for arg in node.args]
        kwargs = {str(pair.key): _try_constant(pair.value) for pair in node.kwargs}
        if value is _MISSING or _MISSING in args or _MISSING in kwargs.values():
            raise _NotConstant
        amplifier = _AMPLIFIERS.get(node.name)
        if amplifier is not None:
            _within(amplifier(value, tuple(args), kwargs), f"the {node.name} filter")
        raise _NotConstant  # checked its bound; the filter itself runs only when rendered
    if (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "range"
    ):
        args = [_try_constant(arg) for arg in node.args]
        if _MISSING not in args and all(isinstance(arg, int) for arg in args):
            return _range(*args)
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
