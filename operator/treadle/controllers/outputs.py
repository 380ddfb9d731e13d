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

MAX_LOADED_OUTPUT_BYTES = 64 * 1024 * 1024
"""The most stored output (as JSON) loaded at once for one workflow's templates: a fan-in of
10,000 children of 1 MiB each is refused (its readers fail), not loaded."""


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


async def load(
    results: ResultStream,
    who: engine.Identity,
    spec: WorkflowSpec,
    status: WorkflowStatus,
    outputs: LoadedOutputs,
    task_pools: Mapping[str, str] | None = None,
) -> None:
    """Loads what templates still to render read, and lets go of what none needs any more.  A
    task that becomes ready in an advance and reads outputs not loaded yet waits for the next
    one (Step.wants_outputs), a pass later."""
    needed = engine.needed_outputs(spec, status)
    for name in outputs.loaded - needed.keys():
        outputs.loaded.discard(name)
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
    found = await results.load_outputs(
        {
            output: output_key(pools.get(output[0], who.pool), who.uid, output[0], output[1], run)
            for output in ids
        },
        limit_bytes=MAX_LOADED_OUTPUT_BYTES,
    )
    for name in wanted:
        mine = [output for output in ids if output[0] == name]
        if all(output in found for output in mine):
            outputs.loaded.add(name)
            outputs.values.update((output, found[output]) for output in mine)
        else:
            outputs.unloadable.add(name)
            log.warning(
                "%s/%s: the outputs of task %s could not be loaded (lost, or more than "
                "%d bytes): templates reading them fail",
                who.namespace,
                who.name,
                name,
                MAX_LOADED_OUTPUT_BYTES,
            )
