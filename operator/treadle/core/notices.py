"""What one engine step means to a user, as the Events the operator posts about it.

Pure: made by the engine from what it did (the letters it dead-lettered, the phase it left), not
by comparing statuses.  A burst of dead-lettered forEach children yields a few Events and a
count, never one Event per child.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from treadle.api.workflows import DeadLetter, WorkflowStatus

MAX_DEAD_LETTER_NOTICES = 5


@dataclass(frozen=True)
class Notice:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def _letter_text(letter: DeadLetter) -> str:
    item = "" if letter.item is None else f" item {letter.item}"
    return (
        f"task {letter.task}{item} dead-lettered after {letter.attempts} attempt(s): {letter.error}"
    )


def step_notices(
    old: str | None, after: WorkflowStatus, new_letters: Sequence[DeadLetter]
) -> list[Notice]:
    """The Events one step of a workflow deserves: the letters it dead-lettered, and the
    change from phase `old` to the phase of status `after`."""
    found: list[Notice] = []
    for letter in new_letters[:MAX_DEAD_LETTER_NOTICES]:
        found.append(Notice("Warning", "DeadLettered", _letter_text(letter)))
    if len(new_letters) > MAX_DEAD_LETTER_NOTICES:
        more = len(new_letters) - MAX_DEAD_LETTER_NOTICES
        found.append(Notice("Warning", "DeadLettered", f"{more} more dead-lettered"))
    new = after.phase
    if old == new or new is None:
        return found
    message = after.message or ""
    if new == "Running":
        reason = {"Suspended": "Resumed", "Failed": "Retrying"}.get(str(old), "Started")
        found.append(Notice("Normal", reason, f"workflow running: {after.progress} done"))
    elif new == "Failed":
        found.append(Notice("Warning", "Failed", message))
    elif new in ("Succeeded", "Suspended", "Stopped", "Terminated"):
        found.append(Notice("Normal", str(new), message))
    return found
