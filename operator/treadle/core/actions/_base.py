"""What every action kind is, and the helpers its modules share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar


class ActionKind(ABC):
    """One kind of action.  A module of treadle.core.actions defines one subclass and its
    `KIND`; the registry (treadle.core.actions.KINDS) lists each once."""

    name: ClassVar[str]
    """The Task field it is (treadle.api.workflows.ACTIONS) and its key in a task message."""
    runner: ClassVar[str]
    """`module:function` of the coroutine the worker runs it with, `(spec, attempt) -> output`
    (treadle.worker.runners resolves it)."""
    own_pod: ClassVar[bool] = False
    """Whether each attempt runs in a pod of its own (a Job the operator makes) instead of on
    a worker."""

    @abstractmethod
    def templates(self, spec: Any, path: str) -> Iterator[tuple[str, str]]:
        """The templated fields of this action's spec, as (field path, source)."""

    @abstractmethod
    def render(self, spec: Any, context: Mapping[str, Any]) -> dict[str, Any]:
        """The action as a worker runs it, every template rendered (its message's part)."""

    def problems(self, spec: Any, path: str) -> list[str]:
        """What the schema cannot check of this action's spec, each naming its field."""
        return []

    def target(self, rendered: Mapping[str, Any], task: str) -> str:
        """The breaker and rate-limit target of a rendered action: by default, the task."""
        return f"task:{task}"

    def secret_keys(self, spec: Any) -> Iterator[tuple[str, str]]:
        """The (Secret, key) pairs the action reads; its worker pods get them as env."""
        return iter(())

    def secrets_named(self, raw: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
        """The Secrets an unparsed action spec names, with their field paths (admission checks
        that the applying user may read each)."""
        return iter(())


def strings_in(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside a JSON value, with its field path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from strings_in(child, f"{path}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from strings_in(child, f"{path}[{index}]")


def render_strings(value: Any, render: Callable[[str], Any]) -> Any:
    """Every string inside a JSON value rendered with `render`; the rest kept as it is."""
    if isinstance(value, str):
        return render(value)
    if isinstance(value, dict):
        return {key: render_strings(child, render) for key, child in value.items()}
    if isinstance(value, list):
        return [render_strings(child, render) for child in value]
    return value
