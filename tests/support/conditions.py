"""Reading metav1.Conditions out of a status in tests."""

from __future__ import annotations

from typing import Any


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition of type `kind` in a status (fails the test when it is missing)."""
    found = [c for c in status.get("conditions") or [] if c.get("type") == kind]
    assert found, f"no {kind} condition in {status.get('conditions')}"
    return dict(found[0])
