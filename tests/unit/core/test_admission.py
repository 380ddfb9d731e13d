from datetime import UTC, datetime

from treadle.core import admission

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
VALID = {
    "tasks": [
        {"name": "a", "command": {"args": ["true"]}},
        {"name": "b", "dependsOn": ["a"], "command": {"args": ["true"]}},
    ]
}


def condition(status: dict, kind: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_a_valid_workflow_is_pending_and_not_ready_while_reconciling() -> None:
    status = admission.workflow_status(VALID, None, generation=3, now=NOW)
    assert (status["phase"], status["observedGeneration"], status["progress"]) == (
        "Pending",
        3,
        "0/2",
    )
    assert condition(status, "Ready")["status"] == "False"
    assert condition(status, "Reconciling")["status"] == "True"
    assert condition(status, "Stalled")["status"] == "False"
    assert condition(status, "Ready")["observedGeneration"] == 3


def test_a_suspended_workflow_is_suspended_and_not_reconciling() -> None:
    status = admission.workflow_status({**VALID, "suspend": True}, None, generation=1, now=NOW)
    assert status["phase"] == "Suspended"
    assert condition(status, "Reconciling")["status"] == "False"


def test_an_invalid_workflow_is_invalid_and_stalled_with_the_field_named() -> None:
    bad = {"tasks": [{"name": "a", "command": {"args": []}}]}
    status = admission.workflow_status(bad, None, generation=1, now=NOW)
    assert status["phase"] == "Invalid"
    assert status["message"].startswith("spec.tasks[0].command.args:")
    assert condition(status, "Stalled")["status"] == "True"


def test_field_paths_read_like_kubernetes_paths() -> None:
    assert admission.field_path(("tasks", 2, "retry", "limit")) == "spec.tasks[2].retry.limit"
