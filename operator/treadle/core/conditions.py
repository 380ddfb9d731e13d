"""metav1.Condition bookkeeping: set a condition, keeping lastTransitionTime when unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from treadle.core import timestamps

ConditionStatus = Literal["True", "False", "Unknown"]


def set_condition(
    conditions: Sequence[dict[str, Any]],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The conditions with `type` set; lastTransitionTime moves only when the status changes."""
    previous = next((c for c in conditions if c.get("type") == type), None)
    changed = previous is None or previous.get("status") != status
    updated: dict[str, Any] = {
        "type": type,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (
            timestamps.text(now) if previous is None or changed else previous["lastTransitionTime"]
        ),
    }
    if generation is not None:
        updated["observedGeneration"] = generation
    others = [c for c in conditions if c.get("type") != type]
    return sorted([*others, updated], key=lambda c: str(c["type"]))


def kstatus(
    conditions: Sequence[dict[str, Any]],
    *,
    ready: bool,
    reconciling: bool,
    stalled: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
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
