"""`python`: call a function importable in the worker with rendered keyword arguments."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from treadle.api.workflows import PythonAction
from treadle.core import templating
from treadle.core.actions._base import ActionKind, render_strings, strings_in


class Python(ActionKind):
    name = "python"
    runner = "treadle.worker.runners:run_python"

    def templates(self, spec: PythonAction, path: str) -> Iterator[tuple[str, str]]:
        yield from strings_in(spec.kwargs, f"{path}.kwargs")

    def render(self, spec: PythonAction, context: Mapping[str, Any]) -> dict[str, Any]:
        # A kwarg that is only `{{ ... }}` keeps the value's type (a list stays a list).
        kwargs = render_strings(
            spec.kwargs or {}, lambda text: templating.render_value(text, context)
        )
        return {"callable": spec.callable, "kwargs": kwargs}


KIND = Python()
