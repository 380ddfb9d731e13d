"""Admission of a resource's spec: validation into typed models, errors that name the field.

The same checks back the admission webhook and the operator's own refusal (`phase: Invalid`),
so a workflow that slipped past a missing webhook still never runs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from treadle.api import pools as pools_api
from treadle.api import workflows
from treadle.api.base import Condition
from treadle.core import (
    actions,
    conditions,
    dags,
    edits,
    engine,
    podspecs,
    pools,
    templates,
    templating,
)

Model = TypeVar("Model", bound=BaseModel)


def field_path(location: Sequence[int | str], root: str = "spec") -> str:
    """`('tasks', 1, 'retry', 'limit')` as `spec.tasks[1].retry.limit`."""
    path = root
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _message(error: Any) -> str:
    # Our own model validators raise ValueError; pydantic prefixes those with "Value error, ".
    return str(error["msg"]).removeprefix("Value error, ")


def parse(model: type[Model], spec: Any, root: str = "spec") -> tuple[Model | None, list[str]]:
    """The spec (or status, `root`) as `model`, or the problems with it, each naming its
    field."""
    try:
        return model.model_validate(spec, by_alias=True), []
    except ValidationError as invalid:
        problems = []
        for error in invalid.errors():
            location = [p for p in error["loc"] if not str(p).startswith("function-")]
            problems.append(f"{field_path(location, root)}: {_message(error)}")
        return None, problems


FINAL_PHASES = (*workflows.ENDED_PHASES, "Invalid")


@dataclass(frozen=True)
class Admission:
    status: workflows.WorkflowStatus | None
    """The new status, or None when this generation was admitted already."""
    runnable: workflows.WorkflowSpec | None
    """The parsed spec when the engine is to drive the workflow (valid, not finished)."""
    restarted: bool = False
    """The spec of a started run changed (around the webhook): it runs again from the start."""
    current: workflows.WorkflowStatus | None = None
    """The status the engine goes on from (the new one, or the one read when there is none)."""


def admit(
    spec: Any,
    status: Mapping[str, Any] | None,
    *,
    generation: int | None,
    now: datetime,
    workflow: Mapping[str, Any],
    default_pool: bool = False,
    template: Mapping[str, Any] | None = None,
    refused: Sequence[str] = (),
) -> Admission:
    """A created, changed or resumed workflow: its status when this generation is new, and
    whether the engine should drive it; a new run's WorkerPool is chosen now (`default_pool`:
    whether the namespace has one named `default`) and kept for the run.  The spec is parsed
    once.  A status that cannot be
    read (written around the operator) makes the workflow Invalid: nothing runs from a record
    of truth that cannot be trusted.  A workflow running a WorkflowTemplate runs the copy its
    status froze, or, for a new run, `template` (the template's spec as read now; None: there
    is none), which its new status then freezes.  `refused`: what the user who applied this
    generation may not have Treadle use (controllers/access.py); any makes it Invalid."""
    read, unreadable = parse(workflows.WorkflowStatus, status or {}, root="status")
    if read is None:
        read = workflows.WorkflowStatus(conditions=_readable_conditions(status))
        fresh = _admitted_status(None, unreadable, read, generation=generation, now=now)
        return Admission(fresh, None, current=fresh)
    current = read
    new_status = None
    digest = edits.spec_hash(spec) if isinstance(spec, Mapping) else None
    frozen = current.template_spec if _keeps_template(spec, current, generation) else template
    parsed, problems = admit_workflow(spec, workflow, frozen)
    if refused:
        parsed, problems = None, [*problems, *refused]
    if is_new_generation(current, generation):
        same_run = current.spec_hash == digest or (
            current.spec_hash is None and edits.has_started(current)
        )
        if parsed is not None and current.phase and same_run:
            # Only suspend, shutdown or activeDeadlineSeconds changed (or a status written
            # before spec hashes): the run goes on, started or not (its status as read may not
            # show its first attempts yet); this generation is now observed.
            new_status = _observed(current, generation, digest)
        else:
            restarted = parsed is not None and edits.has_started(current)
            new_status = _admitted_status(
                parsed, problems, current, generation=generation, now=now, restarted=restarted
            )
            new_status.run_generation, new_status.spec_hash = generation, digest
            if isinstance(spec, Mapping) and templates.ref_name(spec) is not None:
                new_status.template_spec = dict(frozen) if frozen is not None else None
            if parsed is not None:
                new_status.worker_pool = pools.choose(parsed, default_exists=default_pool)
            return Admission(new_status, _runnable(parsed, new_status), restarted, new_status)
        current = new_status
    return Admission(new_status, _runnable(parsed, current), current=current)


def is_new_generation(
    status: workflows.WorkflowStatus | Mapping[str, Any] | None, generation: int | None
) -> bool:
    """Whether this generation of a workflow's spec is still to be admitted."""
    if not isinstance(status, workflows.WorkflowStatus):
        observed = (status or {}).get("observedGeneration")
        return observed != generation or not (status or {}).get("phase")
    return status.observed_generation != generation or not status.phase


def template_wanted(
    spec: Any, status: Mapping[str, Any] | None, generation: int | None
) -> str | None:
    """The WorkflowTemplate to read before `admit`: the one the spec names when this is a new
    run (a run under way keeps the copy its status froze); None when none is needed."""
    if not isinstance(spec, Mapping) or (name := templates.ref_name(spec)) is None:
        return None
    read, _unreadable = parse(workflows.WorkflowStatus, status or {}, root="status")
    if read is not None and _keeps_template(spec, read, generation):
        return None
    return name


def _keeps_template(spec: Any, status: workflows.WorkflowStatus, generation: int | None) -> bool:
    """Whether the run goes on with the template copy its status holds: it has one, and this
    generation was admitted already or only a mutable field changed since its run started."""
    if status.template_spec is None:
        return False
    if status.observed_generation == generation and status.phase:
        return True
    digest = edits.spec_hash(spec) if isinstance(spec, Mapping) else None
    return status.spec_hash == digest or (status.spec_hash is None and edits.has_started(status))


def retryable(
    spec: Any, status: Mapping[str, Any] | None, workflow: Mapping[str, Any]
) -> tuple[workflows.WorkflowSpec, workflows.WorkflowStatus] | None:
    """A workflow the driver does not track that a manual retry may take up again (a Failed
    one): its parsed spec and status, or None when it is invalid (it never ran)."""
    frozen = (status or {}).get("templateSpec")
    read, _unreadable = parse(workflows.WorkflowStatus, status or {}, root="status")
    if read is None or not read.phase or read.phase == "Invalid":
        return None
    parsed, _problems = admit_workflow(spec, workflow, frozen, admitted=True)
    if parsed is None:
        return None
    return parsed, read


def task_pools_of(
    spec: Any, status: Mapping[str, Any] | None, meta: Mapping[str, Any]
) -> tuple[dict[str, str], str]:
    """The pool each task of a workflow runs on (by its spec, or the template copy its status
    holds), and the workflow's own pool; no tasks when its spec does not parse."""
    read, _unreadable = parse(workflows.WorkflowStatus, status or {}, root="status")
    who = engine.Identity.of(meta, read.worker_pool if read is not None else None)
    admitted = read is not None and bool(read.phase) and read.phase != "Invalid"
    if not admitted:
        return {}, who.pool
    frozen = (status or {}).get("templateSpec")
    parsed, _problems = admit_workflow(spec, who.context, frozen, admitted=True)
    if parsed is None:
        return {}, who.pool
    return pools.task_pools(parsed, who.namespace, who.pool), who.pool


def _readable_conditions(status: Mapping[str, Any] | None) -> list[Condition]:
    try:
        return conditions.parse((status or {}).get("conditions"))
    except (ValidationError, AttributeError, TypeError):
        return []


def _runnable(
    parsed: workflows.WorkflowSpec | None, status: workflows.WorkflowStatus
) -> workflows.WorkflowSpec | None:
    return parsed if status.phase not in FINAL_PHASES else None


def _observed(
    status: workflows.WorkflowStatus, generation: int | None, digest: str | None
) -> workflows.WorkflowStatus:
    kept = status.working_copy()
    kept.observed_generation, kept.spec_hash = generation, digest
    kept.conditions = [
        condition.model_copy(update={"observed_generation": generation})
        for condition in status.conditions
    ]
    return kept


def _admitted_status(
    parsed: workflows.WorkflowSpec | None,
    problems: list[str],
    status: workflows.WorkflowStatus,
    *,
    generation: int | None,
    now: datetime,
    restarted: bool = False,
) -> workflows.WorkflowStatus:
    if parsed is None:
        message = "; ".join(problems)
        phase, ready_reason, stalled = "Invalid", "Invalid", True
    elif parsed.suspend:
        message = "suspended: set spec.suspend to false to start"
        phase, ready_reason, stalled = "Suspended", "Suspended", False
    else:
        message = "waiting for its tasks to be scheduled"
        phase, ready_reason, stalled = "Pending", "Pending", False
    if restarted:
        message = (
            f"the spec changed after the run started: running again from the start "
            f"(generation {generation}); {message}"
        )
    current = conditions.kstatus(
        status.conditions,
        ready=False,
        reconciling=not stalled and phase != "Suspended",
        stalled=stalled,
        reason=ready_reason,
        message=message,
        generation=generation,
        now=now,
    )
    total = 0 if parsed is None else len(parsed.all_tasks)
    return workflows.WorkflowStatus(
        phase=phase,
        message=message,
        observed_generation=generation,
        progress=f"0/{total}",
        conditions=current,
    )


def _check_template(
    source: str,
    path: str,
    task: str,
    known: Sequence[str],
    readable: set[str],
    *,
    item_allowed: bool,
) -> list[str]:
    """A template's problems: its syntax, `item` outside forEach, and tasks it reads that are
    unknown or not `readable` from `task` (its ancestors; for an exit task, the DAG too)."""
    try:
        found = templating.references(source)
    except templating.TemplateError as error:
        return [f"{path}: {error}"]
    problems = []
    if "item" in found.names and not item_allowed:
        problems.append(f"{path}: `item` is only defined in the templates of a forEach task")
    for referenced in sorted(found.tasks):
        if referenced not in known:
            problems.append(f"{path}: unknown task {referenced!r}")
        elif referenced not in readable:
            problems.append(
                f"{path}: task {referenced!r} is not an ancestor of {task!r} "
                f"(add it to dependsOn, directly or through another task)"
            )
    return problems


def admit_workflow(
    spec: Any,
    workflow: Mapping[str, Any],
    template: Mapping[str, Any] | None = None,
    *,
    admitted: bool = False,
) -> tuple[workflows.WorkflowSpec | None, list[str]]:
    """The spec parsed and checked, or every problem found (the webhook's and the operator's
    one verdict).  A spec naming a WorkflowTemplate is checked as the spec it runs: `template`
    (that template's spec; None: there is no such template) with its own fields merged in.
    `admitted`: this spec passed the whole check before (its status says so), so only its
    schema is read again, not its templates (deletions and log reads came here, each time
    paying for the templates' checks)."""
    name = templates.ref_name(spec) if isinstance(spec, Mapping) else None
    if name is not None and isinstance(spec, Mapping):
        found = templates.problems(spec, template, name)
        if found or template is None:
            return None, found
        spec = templates.effective(spec, template)
    parsed, problems = parse(workflows.WorkflowSpec, spec)
    if parsed is None or admitted:
        return parsed, problems
    problems = workflow_problems(parsed, workflow)
    return (None, problems) if problems else (parsed, [])


def admit_template(spec: Any) -> list[str]:
    """A WorkflowTemplate's problems: those a Workflow of its spec would have."""
    parsed, problems = parse(workflows.WorkflowTemplateSpec, spec)
    if parsed is None:
        return problems
    return workflow_problems(parsed, {"name": "", "namespace": "", "uid": ""})


ADMISSION_CPU_SECONDS = 1.0
"""CPU time checking one spec's templates may take, all of them together (each is bounded on
its own too: sandbox.MAX_CPU_SECONDS)."""


def workflow_problems(
    spec: workflows.WorkflowSpec,
    workflow: Mapping[str, Any],
    cpu_clock: Callable[[], float] = time.thread_time,
) -> list[str]:
    """What the schema cannot see: the graphs (the DAG's and the exit tasks'), the templates
    and conditions, a static forEach that is no list.  Checking the templates stops, refused,
    past ADMISSION_CPU_SECONDS of `cpu_clock` (500 tasks of costly templates took minutes)."""
    started = cpu_clock()
    dag = dags.Dag.from_tasks([(t.name, t.depends_on) for t in spec.tasks])
    exits = dags.Dag.from_tasks([(t.name, t.depends_on) for t in spec.on_exit])
    problems = dag.problems() + exits.problems("spec.onExit", elsewhere=list(dag.depends_on))
    if problems:
        return problems
    problems += podspecs.env_problems(spec.workers.env, "spec.workers.env")
    problems += podspecs.resources_problems(spec.workers.resources, "spec.workers.resources")
    known = [task.name for task in spec.all_tasks]
    for field, tasks, graph in (("tasks", spec.tasks, dag), ("onExit", spec.on_exit, exits)):
        for index, task in enumerate(tasks):
            if cpu_clock() - started > ADMISSION_CPU_SECONDS:
                return [
                    *problems,
                    f"spec.{field}[{index}]: checking this spec's templates takes more than "
                    f"{ADMISSION_CPU_SECONDS:g} s of CPU; make them simpler or fewer",
                ]
            readable = set(graph.ancestors(task.name))
            if field == "onExit":
                readable |= set(dag.depends_on)
            problems += _task_problems(
                task, f"spec.{field}[{index}]", known, readable, spec, workflow
            )
    return problems


def _task_problems(
    task: workflows.Task,
    path: str,
    known: Sequence[str],
    readable: set[str],
    spec: workflows.WorkflowSpec,
    workflow: Mapping[str, Any],
) -> list[str]:
    problems = actions.problems(task, path)
    if task.for_each is not None:
        found = _check_template(
            task.for_each, f"{path}.forEach", task.name, known, readable, item_allowed=False
        )
        problems += found
        if not found and not templating.references(task.for_each).tasks:
            problems += _static_list(task.for_each, f"{path}.forEach", spec, workflow)
    if task.when is not None:
        problems += _check_template(
            task.when, f"{path}.when", task.name, known, readable, item_allowed=False
        )
    for field, source in actions.templates(task, path):
        problems += _check_template(
            source, field, task.name, known, readable, item_allowed=task.for_each is not None
        )
    return problems


def _static_list(
    source: str, path: str, spec: workflows.WorkflowSpec, workflow: Mapping[str, Any]
) -> list[str]:
    """A forEach over params or workflow fields can be rendered now: it must give a list."""
    try:
        value = templating.render_value(source, {"params": spec.params or {}, "workflow": workflow})
    except templating.TemplateError as error:
        return [f"{path}: {error}"]
    if not isinstance(value, list):
        return [f"{path}: must render to a list, got {type(value).__name__} {value!r:.80}"]
    if len(value) > engine.MAX_FOR_EACH_ITEMS:
        return [f"{path}: gives {len(value)} items (at most {engine.MAX_FOR_EACH_ITEMS})"]
    return []


def admit_pool(spec: Any, name: str) -> tuple[pools_api.WorkerPoolSpec | None, list[str]]:
    """A WorkerPool's spec parsed and checked (the webhook's and the keeper's one verdict);
    `name` is empty while a generated name is not chosen yet (the CRD checks it then)."""
    problems: list[str] = []
    if name and (not re.fullmatch(pools_api.POOL_NAME_PATTERN, name) or len(name) > 63):
        problems.append(str(pools_api.NAME_RULE["message"]))
    parsed, schema = parse(pools_api.WorkerPoolSpec, spec)
    problems += schema
    if parsed is not None:
        problems += pools.env_problems(parsed)
    return (None, problems) if problems else (parsed, [])


def client_refusal(names: Sequence[str], allowed: Sequence[str]) -> str | None:
    """Why a webhook caller whose certificate (already verified against the client CA) names
    `names` is refused, or None: with an allow-list, one of its common names must be on it."""
    if not allowed or set(names) & set(allowed):
        return None
    shown = ", ".join(names) or "no common name"
    return f"client certificate for {shown} is not the API server's ({', '.join(allowed)})"
