"""One workflow's advance, gather -> step -> apply, with its outside parts recorded: what it
enqueues, writes, acknowledges, tells and lets go (#33: the ack-after-write rule and a
workflow's end were covered only end to end and by the fault suite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from treadle.api import RETRY_ANNOTATION
from treadle.api.workflows import WorkflowSpec, WorkflowStatus
from treadle.controllers import advance, wfapply
from treadle.controllers.driver import Driver
from treadle.controllers.tracked import Tracked
from treadle.core import engine
from treadle.core.messages import TaskResult

T0 = datetime(2026, 12, 7, 10, tzinfo=UTC)
NO_RETRY = {"retry": {"limit": 0}}


def chain(*names: str, **extra: Any) -> WorkflowSpec:
    tasks = [
        {
            "name": n,
            "python": {"callable": "time:time"},
            **({"dependsOn": [names[i - 1]]} if i else {}),
        }
        for i, n in enumerate(names)
    ]
    return WorkflowSpec.model_validate({"tasks": tasks, **extra})


class Recording:
    """The results stream's operator side and the API calls an advance makes."""

    def __init__(self) -> None:
        self.enqueued: list[str] = []
        self.forgotten: list[tuple[str, bool]] = []
        self.writes: list[dict[str, Any]] = []
        self.told: list[str] = []
        self.cleared: list[str] = []
        self.deleted: list[str] = []
        self.gone = False

    async def load_outputs(self, refs: list[str]) -> dict[str, Any]:
        return {}

    async def enqueue(self, pool: str, messages: list[Any]) -> None:
        self.enqueued += [m.task for m in messages]

    async def forget_workflows(self, gone: list[tuple[str, str, bool]], logs: bool = False) -> None:
        self.forgotten += [(uid, outputs) for uid, _, outputs in gone]


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Recording:
    record = Recording()

    async def patch_status(api: Any, namespace: str, name: str, change: Any) -> bool:
        record.writes.append(change)
        return not record.gone

    async def post(api: Any, about: Any, type: str, reason: str, message: str) -> None:
        record.told.append(reason)

    async def clear(api: Any, namespace: str, name: str, key: str, value: str) -> str:
        record.cleared.append(value)
        return "9"

    async def delete(api: Any, namespace: str, name: str) -> None:
        record.deleted.append(name)

    monkeypatch.setattr(wfapply.statuses, "patch_workflow_status", patch_status)
    monkeypatch.setattr(wfapply.events, "post", post)
    monkeypatch.setattr(advance.kube, "clear_annotation", clear)
    monkeypatch.setattr(advance.kube, "delete_workflow", delete)
    return record


def driver(seen: Recording, monkeypatch: pytest.MonkeyPatch) -> Driver:
    made = Driver(seen, None, "redis://", "image")  # type: ignore[arg-type]

    async def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(made.owner, "ensure", nothing)
    monkeypatch.setattr(made.owner, "remove", nothing)
    monkeypatch.setattr(made.owner, "let_go", nothing)
    return made


def track(subject: Driver, spec: WorkflowSpec, name: str = "w") -> Tracked:
    who = engine.Identity.of({"uid": name, "name": name, "namespace": "ns"}, "default")
    tracked = Tracked(who, spec, WorkflowStatus(run_generation=1), 1, T0)
    subject.workflows[name] = tracked
    return tracked


def result(task: str, outcome: str = "succeeded") -> TaskResult:
    return TaskResult(
        workflow_uid="w", workflow="w", task=task, item=None, attempt=1, outcome=outcome,  # type: ignore[arg-type]
        run=1, output={"ok": True},
    )  # fmt: skip


async def step(
    subject: Driver, tracked: Tracked, now: datetime, *results: tuple[str, TaskResult]
) -> list[str]:
    """A pass with these results (entry id, result) for the workflow: the ids acknowledged."""
    tracked.ledger.received([(tracked.who.pool, entry) for entry, _ in results])
    acked, failure = await subject.sides.run([(tracked, [r for _, r in results])], now)
    assert failure is None
    return [entry for _, entry in acked]


async def test_a_result_is_acknowledged_only_with_the_write_that_records_it(
    seen: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject = driver(seen, monkeypatch)
    tracked = track(subject, chain("a", "b"))
    assert await step(subject, tracked, T0) == []
    assert seen.enqueued == ["a"]
    assert len(seen.writes) == 1  # the first write is at once
    applied = await step(subject, tracked, T0 + timedelta(milliseconds=300), ("1-0", result("a")))
    assert applied == []  # applied, b enqueued, but not written yet: not acknowledged
    assert seen.enqueued == ["a", "b"]
    assert len(seen.writes) == 1
    assert tracked.due == T0 + timedelta(seconds=1)  # when its write is due
    written = await step(subject, tracked, T0 + timedelta(seconds=1))
    assert written == ["1-0"]
    assert seen.writes[-1]["tasks"]["a"]["phase"] == "Succeeded"


async def test_a_workflow_that_ends_is_written_at_once_let_go_and_forgotten(
    seen: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject = driver(seen, monkeypatch)
    tracked = track(subject, chain("a"))
    await step(subject, tracked, T0)
    done = await step(subject, tracked, T0 + timedelta(milliseconds=10), ("1-0", result("a")))
    assert done == ["1-0"]
    assert seen.writes[-1]["phase"] == "Succeeded"
    assert seen.forgotten == [("w", True)]  # a Succeeded run's stored outputs go too
    assert "w" not in subject.workflows
    assert seen.told[-1] == "Succeeded"


async def test_a_failed_workflow_keeps_its_outputs_and_goes_at_its_ttl(
    seen: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject = driver(seen, monkeypatch)
    spec = chain("a", ttlSecondsAfterFinished=60, defaults=NO_RETRY)
    tracked = track(subject, spec)
    await step(subject, tracked, T0)
    await step(subject, tracked, T0, ("1-0", result("a", "failed")))
    assert tracked.status.phase == "Failed"
    assert seen.forgotten == [("w", False)]  # kept for a manual retry of what reads them
    assert "w" in subject.workflows
    assert tracked.due is not None
    await step(subject, tracked, tracked.due)
    assert seen.deleted == ["w"]
    assert "w" not in subject.workflows


async def test_a_write_that_finds_the_workflow_gone_forgets_it_and_acknowledges_nothing(
    seen: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject = driver(seen, monkeypatch)
    tracked = track(subject, chain("a", "b"))
    await step(subject, tracked, T0)
    seen.gone = True
    acked = await step(subject, tracked, T0 + timedelta(seconds=2), ("1-0", result("a")))
    assert acked == []
    assert "w" not in subject.workflows
    assert subject._orphan_acks == {tracked.who.pool: ["1-0"]}  # acknowledged on the next pass


async def test_a_manual_retry_is_written_before_its_annotation_goes(
    seen: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject = driver(seen, monkeypatch)
    tracked = track(subject, chain("a", defaults=NO_RETRY))
    await step(subject, tracked, T0)
    await step(subject, tracked, T0, ("1-0", result("a", "failed")))
    assert tracked.status.phase == "Failed"
    assert "w" not in subject.workflows  # it ended: forgotten until a handler tracks it again
    subject.workflows["w"] = tracked  # the retry annotation's handler does
    subject.request_retry("w", "all", "5")
    writes = len(seen.writes)
    await step(subject, tracked, T0 + timedelta(milliseconds=100))
    assert len(seen.writes) == writes + 1  # written at once, not at its interval
    assert seen.cleared == ["all"]
    assert tracked.status.phase == "Running"
    assert seen.enqueued == ["a", "a"]
    assert RETRY_ANNOTATION not in tracked.retry_requests.taken
