"""The bounded jinja2 sandbox task templates run in (treadle.core.templating is its face):
operators, filters and method calls that check the size of a result before making it, and a
per-render budget of steps, allocation and CPU time (SPEC, Limits and bad input)."""

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import filters as jinja_filters
from jinja2 import nodes
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

LOOP = "treadle_loop__"
CONCAT = "treadle_concat__"

REFUSED_NODES: dict[type[nodes.Node], str] = {
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
        # Every step (0.5 us to read the clock): one step can be a filter over 64 KiB, and 32
        # such steps in a row took a second unchecked.
        if self.cpu_clock() - self.started > self.cpu_seconds:
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


BUDGET: ContextVar[Budget | None] = ContextVar("treadle_template_budget", default=None)


def _budget() -> Budget:
    found = BUDGET.get()
    if found is None:  # a bounded call outside render_*: give it a budget of its own
        found = Budget()
        BUDGET.set(found)
    return found


def _size(value: Any) -> int:
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        return len(value)
    return 0


def within(size: int, what: str) -> None:
    """Refuses to make a value of `size` characters or items, before it is made."""
    if size > MAX_VALUE_CHARS:
        raise TemplateLimit(f"{what} would make {size} characters or items "
                            f"(at most {MAX_VALUE_CHARS})")  # fmt: skip


def _bits(value: Any) -> int:
    return abs(int(value)).bit_length() if isinstance(value, int) else 64


# --- operators -------------------------------------------------------------------------------


def bounded_binop(operator: str, left: Any, right: Any) -> Any:
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
        within(len(left) * max(right, 0), "'*'")
    elif operator == "*" and isinstance(right, sequence) and isinstance(left, int):
        within(len(right) * max(left, 0), "'*'")
    elif operator == "*" and both_ints and _bits(left) + _bits(right) > MAX_INT_BITS:
        raise TemplateLimit(f"'*' would make a number over {MAX_INT_BITS} bits")
    elif operator == "**" and both_ints and abs(left) > 1 and right > 0:
        if _bits(left) * right > MAX_INT_BITS:
            raise TemplateLimit(f"'**' would make a number over {MAX_INT_BITS} bits")
    elif operator == "+" and isinstance(left, sequence) and isinstance(right, sequence):
        within(len(left) + len(right), "'+'")
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


def concat_guard(*parts: Any) -> str:
    budget = _budget()
    budget.step()
    texts = [str(part) for part in parts]
    within(sum(len(text) for text in texts), "'~'")
    return str(budget.charge("".join(texts)))


def bounded_range(*args: int) -> range:
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


AMPLIFIERS: dict[str, Callable[[Any, tuple[Any, ...], Mapping[str, Any]], int]] = {
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
LEFT_OUT = frozenset({"random", "attr", "pprint"})
"""random: a render must give the same result every time; attr: the way around `_` names."""


def _bounded_filter(name: str, implementation: Callable[..., Any]) -> Callable[..., Any]:
    amplifier = AMPLIFIERS.get(name)
    wants = jinja2.utils._PassArg.from_obj(implementation)

    @jinja2.pass_context
    def bounded(context: jinja2.runtime.Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step()
        if amplifier is not None:
            within(amplifier(value, args, kwargs), f"the {name} filter")
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


class TextOutput(str):
    """A task's output that was text, not JSON, as templates see it: reading a field of it
    fails saying so (not `'str object' has no attribute 'rows'`)."""

    task: str = ""

    @classmethod
    def of(cls, task: str, text: str) -> "TextOutput":
        made = cls(text)
        made.task = task
        return made

    def not_json(self, field: str) -> TemplateError:
        return TemplateError(
            f"tasks.{self.task}.output is text, not JSON (it printed {str(self)[:60]!r}), so it "
            f"has no field {field!r}: have the task print a JSON object (echo "
            f"'{{\"{field}\": ...}}'), or use the text as it is"
        )


def _field_of_text(obj: Any, field: Any) -> bool:
    """Whether this reads a field of a text output (`tasks.x.output.rows`, `...['rows']`)."""
    return isinstance(obj, TextOutput) and isinstance(field, str) and not hasattr(str, field)


class Bounded(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(_OPERATORS)
    intercepted_unops = frozenset({"-", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(
            undefined=jinja2.StrictUndefined, autoescape=False, optimized=False, **options
        )
        self.filters = {
            name: _bounded_filter(name, implementation)
            for name, implementation in jinja_filters.FILTERS.items()
            if name not in LEFT_OUT
        }
        self.globals = {
            "range": bounded_range,
            "dict": dict,
            "namespace": jinja2.utils.Namespace,
            LOOP: _loop_guard,
            CONCAT: concat_guard,
        }
        self._callables = frozenset(id(value) for value in self.globals.values())

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        return bounded_binop(operator, left, right)

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
            within(_method_bound(owner, name, args), f".{name}()")
        else:
            shown = name or type(function).__name__
            raise TemplateError(f"calling {shown!r} is not allowed in templates")
        return budget.charge(super().call(context, function, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        # A key of the user's data wins over a method of the same name: `params.items` is the
        # param `items`, not dict.items (a forEach over it was refused as a builtin method).
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        if _field_of_text(obj, attribute):
            raise obj.not_json(attribute)
        if isinstance(obj, TextOutput):
            obj = str(obj)  # its methods are str's (the allowed ones are listed by type)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if _field_of_text(obj, argument):
            raise obj.not_json(argument)
        value = super().getitem(obj, argument)
        if isinstance(argument, slice):
            _budget().charge(value)
        return value


def _finalize(value: Any) -> Any:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else value


class _TextSandbox(Bounded):
    pass


class _NativeSandbox(Bounded):
    code_generator_class = NativeCodeGenerator
    concat = staticmethod(native_concat)  # type: ignore[assignment]
    template_class = NativeTemplate


TEXT = _TextSandbox(finalize=_finalize)
NATIVE = _NativeSandbox()
