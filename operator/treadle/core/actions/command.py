"""`command`: run argv in the worker; the output is stdout, parsed as JSON when it parses."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from treadle.api.workflows import CommandAction
from treadle.core import templating
from treadle.core.actions._base import ActionKind


class Command(ActionKind):
    name = "command"
    runner = "treadle.worker.runners:run_command"

    def templates(self, spec: CommandAction, path: str) -> Iterator[tuple[str, str]]:
        for number, arg in enumerate(spec.args):
            yield f"{path}.args[{number}]", arg

    def render(self, spec: CommandAction, context: Mapping[str, Any]) -> dict[str, Any]:
        return {"args": [templating.render_text(arg, context) for arg in spec.args]}


KIND = Command()
