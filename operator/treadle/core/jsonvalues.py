"""JSON that a tenant wrote (task output, results, stored outputs): read so that nothing in it
can raise past its reader or make the status that will hold it unserialisable.

`json.loads` accepts what the API server will not store and Python cannot send: a lone
surrogate (`"\\ud800"`: encoding the status as UTF-8 fails), `NaN` and `Infinity` (not JSON),
and nesting deep enough to raise RecursionError in whoever walks it next (the status model,
the patch, json.dumps).  `loads` refuses all of them with ValueError; `fit` says what is wrong
with a value already in hand.  Both walk without recursion.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
"""Deepest nesting of a task's output (the SPEC allows params 32; outputs get room for more)."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of `text`, or ValueError when it is no JSON, nests deeper than
    `max_depth`, or holds what cannot be written back (NaN, Infinity, a lone surrogate)."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError as error:
        raise ValueError(f"nests deeper than {max_depth} levels") from error
    problem = fit(value, max_depth)
    if problem is not None:
        raise ValueError(problem)
    return value


def fit(value: Any, max_depth: int = MAX_DEPTH) -> str | None:
    """Why a decoded JSON value cannot go into status as it is, or None."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, str):
            if not node.isascii() and _SURROGATE.search(node):
                return "holds a lone surrogate (\\ud800-\\udfff), which is no Unicode text"
        elif isinstance(node, float):
            if not math.isfinite(node):
                return f"holds {node}, which is not JSON"
        elif isinstance(node, dict | list | tuple):
            if depth >= max_depth:
                return f"nests deeper than {max_depth} levels"
            if isinstance(node, dict):
                pending += [(key, depth + 1) for key in node]
                pending += [(child, depth + 1) for child in node.values()]
            else:
                pending += [(child, depth + 1) for child in node]
        elif node is not None and not isinstance(node, bool | int):
            return f"holds a {type(node).__name__}, which is not JSON"
    return None


def text(value: str) -> str:
    """`value` with every lone surrogate replaced by U+FFFD, so it can be sent as UTF-8."""
    if value.isascii() or not _SURROGATE.search(value):
        return value
    return _SURROGATE.sub("\ufffd", value)
