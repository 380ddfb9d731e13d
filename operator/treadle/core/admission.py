"""Admission of a resource's spec: validation into typed models, errors that name the field.

The same checks back the admission webhook and the operator's own refusal (`phase: Invalid`),
so a workflow that slipped past a missing webhook still never runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from treadle.api import workflows
from treadle.core import conditions

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


def parse(model: type[Model], spec: Any) -> tuple[Model | None, list[str]]:
    """The spec as `model`, or the problems with it, each naming its field."""
    try:
        return model.model_validate(spec, by_alias=True), []
    except ValidationError as invalid:
        problems = []
        for error in invalid.errors():
            location = [p for p in error["loc"] if not str(p).startswith("function-")]
            problems.append(f"{field_path(location)}: {_message(error)}")
        return None, problems


def workflow_status(
    spec: Any, status: dict[str, Any] | None, *, generation: int | None, now: datetime
) -> dict[str, Any]:
    """The status a newly seen or changed workflow gets before its engine takes over."""
    status = dict(status or {})
    parsed, problems = parse(workflows.WorkflowSpec, spec)
    previous = status.get("conditions") or []
    if parsed is None:
        message = "; ".join(problems)
        phase, ready_reason, stalled = "Invalid", "Invalid", True
    elif parsed.suspend:
        message = "suspended: set spec.suspend to false to start"
        phase, ready_reason, stalled = "Suspended", "Suspended", False
    else:
        message = "waiting for its tasks to be scheduled"
        phase, ready_reason, stalled = "Pending", "Pending", False
    current = conditions.set_condition(
        previous,
        type="Ready",
        status="False",
        reason=ready_reason,
        message=message,
        generation=generation,
        now=now,
    )
    current = conditions.set_condition(
        current,
        type="Stalled",
        status="True" if stalled else "False",
        reason=ready_reason,
        message=message if stalled else "",
        generation=generation,
        now=now,
    )
    current = conditions.set_condition(
        current,
        type="Reconciling",
        status="False" if stalled or phase == "Suspended" else "True",
        reason=ready_reason,
        message="" if stalled else message,
        generation=generation,
        now=now,
    )
    total = 0 if parsed is None else len(parsed.tasks)
    return {
        "phase": phase,
        "message": message,
        "observedGeneration": generation,
        "progress": f"0/{total}",
        "conditions": current,
    }
