"""metav1.Condition bookkeeping: set a condition, keeping lastTransitionTime when unchanged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from treadle.api.base import Condition
from treadle.core import timestamps

ConditionStatus = Literal["True", "False", "Unknown"]


def parse(raw: Sequence[Mapping[str, Any]] | None) -> list[Condition]:
    """Conditions as status holds them (camelCase JSON)."""
    return [Condition.model_validate(condition) for condition in raw or []]


def wire(found: Sequence[Condition]) -> list[dict[str, Any]]:
    """Conditions as status holds them."""
    return [condition.model_dump(mode="json", exclude_none=True) for condition in found]


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """The conditions with `type` set; lastTransitionTime moves only when the status changes."""
    previous = next((c for c in conditions if c.type == type), None)
    changed = previous is None or previous.status != status
    updated = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=(
            timestamps.text(now) if previous is None or changed else previous.last_transition_time
        ),
        observed_generation=generation,
    )
    others = [c for c in conditions if c.type != type]
    return sorted([*others, updated], key=lambda c: c.type)


def invalid(
    conditions: Sequence[Condition], message: str, *, generation: int | None, now: datetime
) -> list[Condition]:
    """The conditions of an object whose spec is refused: not ready, stalled, reason Invalid."""
    return kstatus(
        conditions,
        ready=False,
        reconciling=False,
        stalled=True,
        reason="Invalid",
        message=message,
        generation=generation,
        now=now,
    )


def kstatus(
    conditions: Sequence[Condition],
    *,
    ready: bool,
    reconciling: bool,
    stalled: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """Ready, Reconciling and Stalled together, as kstatus (Flux, kubectl wait) reads them; the
    message goes on Ready and on whichever of the other two is True."""
    current = list(conditions)
    for kind, status, text in (
        ("Ready", ready, message),
        ("Reconciling", reconciling, message if reconciling else ""),
        ("Stalled", stalled, message if stalled else ""),
    ):
        current = set_condition(
            current,
            type=kind,
            status="True" if status else "False",
            reason=reason,
            message=text,
            generation=generation,
            now=now,
        )
    return current
