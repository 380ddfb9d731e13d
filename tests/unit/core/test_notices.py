"""Events a status change deserves: phase changes and new dead letters, bounded in number."""

from __future__ import annotations

from typing import Any

from treadle.api.workflows import DeadLetter, WorkflowStatus
from treadle.core import notices
from treadle.core.notices import MAX_DEAD_LETTER_NOTICES, Notice


def letter(item: int) -> DeadLetter:
    return DeadLetter(task="fetch", item=item, attempts=3, error="503", at="t")


def step_notices(
    old: str | None, after: dict[str, Any], new_letters: list[DeadLetter]
) -> list[Notice]:
    return notices.step_notices(old, WorkflowStatus.model_validate(after), new_letters)


def test_a_workflow_that_starts_and_succeeds_gets_one_event_each() -> None:
    running = {"phase": "Running", "progress": "0/2"}
    assert step_notices(None, running, []) == [
        Notice("Normal", "Started", "workflow running: 0/2 done")
    ]
    done = {"phase": "Succeeded", "message": "all tasks succeeded"}
    assert step_notices("Running", done, []) == [
        Notice("Normal", "Succeeded", "all tasks succeeded")
    ]
    assert step_notices("Succeeded", done, []) == []


def test_a_failure_and_a_manual_retry_are_told_apart_from_a_start() -> None:
    failed = {"phase": "Failed", "message": "dead-lettered: fetch", "deadLetterCount": 1}
    assert step_notices("Running", failed, [letter(1)]) == [
        Notice(
            "Warning", "DeadLettered", "task fetch item 1 dead-lettered after 3 attempt(s): 503"
        ),
        Notice("Warning", "Failed", "dead-lettered: fetch"),
    ]
    revived = {"phase": "Running", "progress": "1/2", "deadLetters": []}
    assert [n.reason for n in step_notices("Failed", revived, [])] == ["Retrying"]


def test_a_burst_of_dead_letters_is_summarised() -> None:
    after = {"phase": "Running"}
    found = step_notices("Running", after, [letter(i) for i in range(1, 50)])
    assert len(found) == MAX_DEAD_LETTER_NOTICES + 1
    assert found[-1].message == f"{49 - MAX_DEAD_LETTER_NOTICES} more dead-lettered"
