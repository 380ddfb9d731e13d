"""Stored outputs loaded for templates are bounded for all workflows together (issue #31,
problem 4: loading took 16-21 MiB of operator memory per MB of JSON, and the cap counted bytes
per workflow only, so fan-ins side by side could take gigabytes)."""

from __future__ import annotations

from typing import Any

from support.steps import T0, cmd, ok, spec, step
from treadle.api.workflows import WorkflowStatus
from treadle.controllers import outputs
from treadle.core import engine


class Stored:
    """Stored outputs of a given size each, as the results stream would report them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.reads = 0

    async def output_sizes(self, keys: dict[Any, str]) -> dict[Any, int]:
        return dict.fromkeys(keys, self.size)

    async def read_outputs(self, keys: dict[Any, str], sizes: dict[Any, int]) -> dict[Any, Any]:
        self.reads += 1
        return {owner: {"n": 1} for owner in keys}


def waiting_on_a_stored_output(uid: str) -> tuple[Any, WorkflowStatus, engine.Identity]:
    """A workflow whose task `b` reads task `a`'s output, stored in Redis (too big to inline)."""
    workflow = spec(cmd("a"), cmd("b", "echo", "{{ tasks.a.output.n }}", dependsOn=["a"]))
    first = step(workflow, {})
    done = ok(first.enqueue[0], {"n": 1}).stored_at("key-a", keep_copy=False)
    second = engine.advance(workflow, first.status, [done], now=T0, who=WHO(uid), generation=1)
    return workflow, second.status, WHO(uid)


def WHO(uid: str) -> engine.Identity:
    return engine.Identity(uid=uid, name=uid, namespace="ns", pool=f"wf-{uid}")


async def test_a_workflow_whose_outputs_do_not_fit_what_is_left_waits_its_turn() -> None:
    budget = outputs.OutputBudget(limit_bytes=1000)
    stored = Stored(size=600)
    first, second = outputs.LoadedOutputs(), outputs.LoadedOutputs()
    spec_a, status_a, who_a = waiting_on_a_stored_output("wa")
    spec_b, status_b, who_b = waiting_on_a_stored_output("wb")
    await outputs.load(stored, who_a, spec_a, status_a, first, budget=budget)  # type: ignore[arg-type]
    await outputs.load(stored, who_b, spec_b, status_b, second, budget=budget)  # type: ignore[arg-type]
    assert (first.loaded, second.loaded, second.unloadable) == ({"a"}, set(), set())
    assert budget.in_use == 600
    budget.release(first)  # its workflow finished or went
    await outputs.load(stored, who_b, spec_b, status_b, second, budget=budget)  # type: ignore[arg-type]
    assert second.loaded == {"a"}
    assert budget.in_use == 600


async def test_outputs_over_the_whole_budget_are_refused_and_read_from_nowhere() -> None:
    budget = outputs.OutputBudget(limit_bytes=1000)
    stored = Stored(size=5000)
    loaded = outputs.LoadedOutputs()
    workflow, status, who = waiting_on_a_stored_output("w")
    await outputs.load(stored, who, workflow, status, loaded, budget=budget)  # type: ignore[arg-type]
    assert loaded.unloadable == {"a"}
    assert stored.reads == 0
    assert budget.in_use == 0
