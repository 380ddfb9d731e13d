"""Attempts whose worker never starts fail after `workers.startTimeoutSeconds` with the pod's
reason, instead of staying Queued for ever (#13, problem 6)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from treadle.api.workflows import WorkflowSpec
from treadle.core import engine

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
WHO = engine.Identity(uid="u1", name="wf", namespace="ns", pool="p")
WORKFLOW = WorkflowSpec.model_validate(
    {
        "workers": {"startTimeoutSeconds": 60},
        "defaults": {"retry": {"limit": 1, "backoff": {"durationSeconds": 1, "jitter": 0}}},
        "tasks": [
            {"name": "one", "command": {"args": ["true"]}},
            {"name": "each", "command": {"args": ["{{ item }}"]}, "forEach": "[1, 2, 3]"},
        ],
    }
)


def test_overdue_only_with_work_in_flight_no_ready_worker_and_the_timeout_passed() -> None:
    def overdue(**given: object) -> bool:
        facts: dict[str, object] = {
            "in_flight": True, "ready_workers": 0, "waiting_since": T0,
            "now": T0 + timedelta(seconds=60), "timeout_seconds": 60,
        }  # fmt: skip
        return engine.start_overdue(**{**facts, **given})  # type: ignore[arg-type]

    assert overdue()
    assert not overdue(now=T0 + timedelta(seconds=59))
    assert not overdue(ready_workers=1)
    assert not overdue(in_flight=False)
    assert not overdue(waiting_since=None)


def test_every_attempt_in_flight_fails_with_the_reason_and_is_retried_then_dead_lettered() -> None:
    first = engine.advance(WORKFLOW, {"runGeneration": 1}, [], now=T0, who=WHO)
    assert sorted((m.task, m.item) for m in first.enqueue) == [
        ("each", 0), ("each", 1), ("each", 2), ("one", None),
    ]  # fmt: skip
    error = "no worker started within 60 s: pod wf-w-0: ImagePullBackOff: back-off pulling"
    failures = engine.fail_in_flight(WORKFLOW, first.status, WHO, error)
    assert sorted((f.task, f.item, f.attempt, f.outcome) for f in failures) == [
        ("each", 0, 1, "failed"), ("each", 1, 1, "failed"), ("each", 2, 1, "failed"),
        ("one", None, 1, "failed"),
    ]  # fmt: skip
    later = T0 + timedelta(seconds=61)
    retried = engine.advance(WORKFLOW, first.status, failures, now=later, who=WHO)
    assert retried.wire["tasks"]["one"]["phase"] == "Retrying"
    assert "ImagePullBackOff" in retried.wire["tasks"]["one"]["error"]
    again = engine.advance(WORKFLOW, retried.status, [], now=later + timedelta(seconds=2), who=WHO)
    assert {m.attempt for m in again.enqueue} == {2}
    failures = engine.fail_in_flight(WORKFLOW, again.status, WHO, error)
    done = engine.advance(
        WORKFLOW, again.status, failures, now=later + timedelta(seconds=70), who=WHO,
        rng=random.Random(0),
    )  # fmt: skip
    assert done.wire["phase"] == "Failed"
    assert done.wire["deadLetterCount"] == 4
    assert all("ImagePullBackOff" in letter["error"] for letter in done.wire["deadLetters"])
