"""The stored outputs a workflow's templates still read, loaded from Redis for the engine
(SPEC: a large output is loaded only when a template needs it) and let go once none does."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from treadle.api.workflows import WorkflowSpec, WorkflowStatus
from treadle.core import engine
from treadle.services.keys import output_key
from treadle.services.results import ResultStream

log = logging.getLogger(__name__)

MAX_LOADED_OUTPUT_BYTES = 24 * 1024 * 1024
"""The most stored output (as JSON) loaded at once for one workflow's templates, and for all
of them together (OutputBudget): JSON takes 16-21 times its size once decoded, so this keeps
loaded outputs near 500 MiB of the operator's memory.  A fan-in over it is refused (its
readers fail, saying so); one that fits but finds the budget taken waits its turn."""


@dataclass
class OutputBudget:
    """The stored-output bytes loaded for all workflows' templates at once."""

    limit_bytes: int = MAX_LOADED_OUTPUT_BYTES
    in_use: int = 0

    def release(self, outputs: LoadedOutputs, tasks: set[str] | None = None) -> None:
        """Lets go of what `outputs` holds of `tasks` (None: all of it)."""
        for name in list(outputs.sizes) if tasks is None else tasks:
            self.in_use -= outputs.sizes.pop(name, 0)


@dataclass
class LoadedOutputs:
    """One workflow's outputs in memory for its templates, and what the engine keeps between
    advances."""

    values: dict[engine.OutputId, Any] = field(default_factory=dict)
    """By (task, item): only those `engine.needed_outputs` names."""
    loaded: set[str] = field(default_factory=set)
    """The tasks whose outputs are in `values`."""
    unloadable: set[str] = field(default_factory=set)
    """Tasks whose outputs could not be loaded (Redis lost some, or they were too large):
    not asked for again; the templates reading them fail and say so."""
    rendered: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)
    """forEach tasks' rendered items (engine.advance fills it)."""
    sizes: dict[str, int] = field(default_factory=dict)
    """The bytes loaded of each task's outputs (counted in the OutputBudget)."""


async def load(
    results: ResultStream,
    who: engine.Identity,
    spec: WorkflowSpec,
    status: WorkflowStatus,
    outputs: LoadedOutputs,
    task_pools: Mapping[str, str] | None = None,
    budget: OutputBudget | None = None,
) -> None:
    """Loads what templates still to render read, and lets go of what none needs any more.  A
    task that becomes ready in an advance and reads outputs not loaded yet waits for the next
    one (Step.wants_outputs), a pass later; so does one whose outputs do not fit in what the
    `budget` has left."""
    budget = budget if budget is not None else OutputBudget()
    needed = engine.needed_outputs(spec, status)
    for name in outputs.loaded - needed.keys():
        outputs.loaded.discard(name)
        budget.release(outputs, {name})
        for key in [k for k in outputs.values if k[0] == name]:
            del outputs.values[key]
    wanted = {
        name: items
        for name, items in needed.items()
        if name not in outputs.loaded and name not in outputs.unloadable
    }
    if not wanted:
        return
    ids = [
        (name, item)
        for name, items in sorted(wanted.items())
        for item in ([None] if items is None else range(items))
    ]
    run = status.run_generation
    pools = task_pools or {}
    keys = {
        output: output_key(pools.get(output[0], who.pool), who.uid, output[0], output[1], run)
        for output in ids
    }
    sizes = await results.output_sizes(keys)
    total = sum(sizes.values())
    if total > budget.limit_bytes:
        found: dict[engine.OutputId, Any] = {}
    elif budget.in_use + total > budget.limit_bytes:
        log.info(
            "%s/%s: %d bytes of stored outputs wait until other workflows' templates let go "
            "of theirs",
            who.namespace,
            who.name,
            total,
        )
        return
    else:
        found = await results.read_outputs(keys, sizes)
    for name in wanted:
        mine = [output for output in ids if output[0] == name]
        if all(output in found for output in mine):
            outputs.loaded.add(name)
            outputs.values.update((output, found[output]) for output in mine)
            outputs.sizes[name] = sum(sizes[output] for output in mine)
            budget.in_use += outputs.sizes[name]
        else:
            outputs.unloadable.add(name)
            log.warning(
                "%s/%s: the outputs of task %s could not be loaded (lost, or more than "
                "%d bytes): templates reading them fail",
                who.namespace,
                who.name,
                name,
                budget.limit_bytes,
            )
