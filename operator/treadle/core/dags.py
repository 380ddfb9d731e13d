"""The task graph of a workflow: dependency checks, cycles with their path, ancestors, order.

Pure functions of the task list; the admission webhook and the operator both call them, so a
cyclic or dangling workflow is refused the same way whether or not the webhook is installed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property


class GraphError(ValueError):
    """A problem with the graph, its message naming the field and the tasks involved."""


@dataclass(frozen=True)
class Dag:
    """Task names and, for each, the tasks it depends on (in the order the user wrote them)."""

    depends_on: Mapping[str, Sequence[str]]

    @classmethod
    def from_tasks(cls, tasks: Sequence[tuple[str, Sequence[str]]]) -> Dag:
        return cls({name: tuple(deps) for name, deps in tasks})

    def problems(self, field: str = "spec.tasks", elsewhere: Sequence[str] = ()) -> list[str]:
        """Every unknown or self dependency, then the first cycle found; empty when valid.
        `field` is the task list's path; `elsewhere` names tasks of another list, which these
        may not depend on (the DAG's, for exit tasks)."""
        found = []
        names = list(self.depends_on)
        for index, name in enumerate(names):
            for dep in self.depends_on[name]:
                if dep == name:
                    found.append(f"{field}[{index}].dependsOn: task {name!r} depends on itself")
                elif dep in elsewhere:
                    found.append(
                        f"{field}[{index}].dependsOn: {dep!r} is a task of the DAG (exit tasks "
                        "run once all of it has ended and may depend only on other exit tasks)"
                    )
                elif dep not in self.depends_on:
                    found.append(
                        f"{field}[{index}].dependsOn: unknown task {dep!r} (tasks are: "
                        f"{', '.join(sorted(names))})"
                    )
        if not found:
            cycle = self.find_cycle()
            if cycle:
                found.append(f"{field}: dependency cycle {' -> '.join(cycle)}")
        return found

    def find_cycle(self) -> list[str] | None:
        """A cycle as a path that starts and ends at the same task, e.g. [a, b, c, a]; or None.

        Depth-first with an explicit stack (no recursion limit for long chains); the path follows
        dependency edges in reverse so it reads in execution order: a -> b means b runs after a.
        """
        dependents: dict[str, list[str]] = {name: [] for name in self.depends_on}
        for name, deps in self.depends_on.items():
            for dep in deps:
                if dep in dependents:
                    dependents[dep].append(name)
        white, grey, black = 0, 1, 2
        colour = dict.fromkeys(self.depends_on, white)
        for root in self.depends_on:
            if colour[root] != white:
                continue
            path = [root]
            colour[root] = grey
            stack = [iter(dependents[root])]
            while stack:
                child = next(stack[-1], None)
                if child is None:
                    stack.pop()
                    colour[path.pop()] = black
                    continue
                if colour[child] == grey:
                    return [*path[path.index(child) :], child]
                if colour[child] == white:
                    colour[child] = grey
                    path.append(child)
                    stack.append(iter(dependents[child]))
        return None

    @cached_property
    def order(self) -> list[str]:
        """Tasks in an order where every task comes after its dependencies (Kahn, stable)."""
        if self.problems():
            raise GraphError("; ".join(self.problems()))
        remaining = {name: len(set(deps)) for name, deps in self.depends_on.items()}
        dependents: dict[str, list[str]] = {name: [] for name in self.depends_on}
        for name, deps in self.depends_on.items():
            for dep in set(deps):
                dependents[dep].append(name)
        ready = [name for name in self.depends_on if remaining[name] == 0]
        ordered: list[str] = []
        while ready:
            name = ready.pop(0)
            ordered.append(name)
            for child in dependents[name]:
                remaining[child] -= 1
                if remaining[child] == 0:
                    ready.append(child)
        return ordered

    def ancestors(self, name: str) -> frozenset[str]:
        """Every task that must finish before `name` can start (transitively)."""
        return self._ancestors[name]

    @cached_property
    def _ancestors(self) -> dict[str, frozenset[str]]:
        found: dict[str, frozenset[str]] = {}
        for name in self.order:
            direct = set(self.depends_on[name])
            for dep in self.depends_on[name]:
                direct |= found[dep]
            found[name] = frozenset(direct)
        return found

    def descendants(self, name: str) -> frozenset[str]:
        """Every task that waits, directly or not, on `name`."""
        return frozenset(other for other in self.depends_on if name in self._ancestors[other])
