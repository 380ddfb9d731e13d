"""The driver advances workflows side by side, bounded, and one failure costs no other
workflow its acknowledgements."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from treadle.api.workflows import WorkflowSpec, WorkflowStatus
from treadle.controllers import sidebyside, wfapply
from treadle.controllers.driver import Driver, Tracked
from treadle.core import asides, engine
from treadle.core.messages import TaskResult

UTC_NOW = datetime.now(UTC)
SPEC = WorkflowSpec.model_validate({"tasks": [{"name": "a", "python": {"callable": "time:time"}}]})


def tracked(name: str, namespace: str = "ns") -> Tracked:
    who = engine.Identity(uid=name, name=name, namespace=namespace, pool=f"wf-{name}")
    return Tracked(who, SPEC, WorkflowStatus(), 1)


def flat(acked: list[tuple[str, str]]) -> list[str]:
    return [entry for _, entry in acked]


class Bare:
    """A driver's side-by-side advances around a stand-in `advance`."""

    def __init__(self, advance: Any) -> None:
        self.workflows: dict[str, Tracked] = {}
        self._orphan_acks: dict[str, list[str]] = defaultdict(list)
        self.sides = sidebyside.SideBySide(
            lambda t, r, now: self.advance(t, r, now), self.workflows, self.forget, self.exists
        )
        self.advance = advance

    async def exists(self, tracked: Tracked) -> bool:
        return True

    def forget(self, uid: str) -> None:
        gone = self.workflows.pop(uid, None)
        if gone is not None:
            for pool, entry in gone.ledger.abandoned():
                self._orphan_acks[pool].append(entry)

    async def _advance_all(self, work: Any, now: datetime) -> Any:
        return await self.sides.run(work, now)

    def worker_pod_gone(self, uid: str) -> None:
        tracked = self.workflows.get(uid)
        if tracked is not None:
            tracked.workers.checked_at = None
            tracked.look_again()


def bare_driver(advance: Any) -> Bare:
    return Bare(advance)


async def test_workflows_are_advanced_side_by_side_at_most_the_limit_at_once() -> None:
    running, most = 0, 0
    release = asyncio.Event()

    async def advance(
        t: Tracked, results: list[TaskResult], now: datetime
    ) -> list[tuple[str, str]]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return [(t.who.pool, f"{t.who.name}-result")]

    work = [(tracked(f"w{i}"), []) for i in range(100)]
    passing = asyncio.create_task(bare_driver(advance)._advance_all(work, datetime.now(UTC)))
    for _ in range(10):
        await asyncio.sleep(0)
    assert running == sidebyside.ADVANCE_CONCURRENCY  # all at once, up to the limit
    release.set()
    acked, failure = await passing
    assert failure is None
    assert most == sidebyside.ADVANCE_CONCURRENCY
    assert sorted(flat(acked)) == sorted(f"w{i}-result" for i in range(100))


def result(task: str) -> TaskResult:
    return TaskResult(
        workflow_uid="broken",
        workflow="broken",
        task=task,
        item=None,
        attempt=1,
        outcome="succeeded",
    )


async def test_one_workflow_failing_costs_the_others_nothing_and_keeps_its_results() -> None:
    given: list[list[str]] = []

    async def advance(t: Tracked, results: list[TaskResult], now: datetime) -> list[str]:
        if t.who.name == "broken":
            given.append([r.task for r in results])
            if len(given) == 1:
                raise RuntimeError("API server said no")
        return [(t.who.pool, f"{t.who.name}-result")]

    broken = tracked("broken")
    bare = bare_driver(advance)
    bare.workflows["broken"] = broken
    now = datetime.now(UTC)
    work = [(tracked("first"), []), (broken, [result("a")]), (tracked("last"), [])]
    acked, failure = await bare._advance_all(work, now)
    assert sorted(flat(acked)) == ["first-result", "last-result"]
    assert failure is None  # the others went on: no back-off for everyone
    assert [r.task for r in broken.ledger.retained] == ["a"]
    assert broken.due == now + sidebyside.RETRY_AFTER_FAILURE
    assert broken.failures == 1
    # Its next advance is given the result again, before the new ones.
    acked, failure = await bare._advance_all([(broken, [result("b")])], now)
    assert given == [["a"], ["a", "b"]]
    assert flat(acked) == ["broken-result"]
    assert failure is None
    assert not broken.ledger.retained
    assert broken.failures == 0


async def test_a_workflow_failing_again_and_again_is_tried_less_and_less_often() -> None:
    async def advance(t: Tracked, results: list[TaskResult], now: datetime) -> list[str]:
        raise RuntimeError("namespace is being terminated")

    failing = tracked("failing")
    bare = bare_driver(advance)
    bare.workflows["failing"] = failing
    waits = []
    for _ in range(7):
        await bare._advance_all([(failing, []), (tracked("fine"), [])], UTC_NOW)
        assert failing.due is not None
        waits.append((failing.due - UTC_NOW).total_seconds())
    assert waits == [2, 4, 8, 16, 32, 60, 60]


async def test_when_every_workflow_fails_the_pass_fails() -> None:
    async def advance(t: Tracked, results: list[TaskResult], now: datetime) -> list[str]:
        raise ConnectionError("no API server")

    bare = bare_driver(advance)
    acked, failure = await bare._advance_all([(tracked("a"), []), (tracked("b"), [])], UTC_NOW)
    assert flat(acked) == []
    assert isinstance(failure, ConnectionError)


async def test_a_cancelled_pass_is_cancelled_not_reported_as_a_failure() -> None:
    async def advance(t: Tracked, results: list[TaskResult], now: datetime) -> list[str]:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await bare_driver(advance)._advance_all([(tracked("w"), [])], datetime.now(UTC))


async def test_a_workflow_gone_with_its_namespace_is_forgotten() -> None:
    async def advance(t: Tracked, results: list[TaskResult], now: datetime) -> list[str]:
        raise ApiError(status=Status(code=404, message='namespaces "gone" not found'))

    async def exists(t: Tracked) -> bool:
        return False

    gone = tracked("gone")
    gone.ledger.unacked = [("wf-gone", "1-0")]
    bare = bare_driver(advance)
    bare.workflows["gone"] = gone
    bare.sides.exists = exists
    acked, failure = await bare._advance_all([(gone, [])], UTC_NOW)
    assert (flat(acked), failure) == ([], None)
    assert "gone" not in bare.workflows
    assert bare._orphan_acks == {"wf-gone": ["1-0"]}  # acknowledged on the next pass


class RecordingResults:
    """The results stream's operator side, recording what is enqueued and forgotten."""

    def __init__(self) -> None:
        self.enqueued: list[tuple[str, int]] = []
        self.forgotten: list[tuple[str, bool]] = []

    async def load_outputs(self, refs: list[str]) -> dict[str, Any]:
        return {}

    async def enqueue(self, pool: str, messages: list[Any]) -> None:
        self.enqueued += [(m.key, m.attempt) for m in messages]

    async def forget_workflow(self, uid: str, pool: str, *, outputs: bool) -> None:
        self.forgotten.append((uid, outputs))

    async def forget_workflows(self, gone: list[tuple[str, str, bool]]) -> None:
        self.forgotten += [(uid, outputs) for uid, _, outputs in gone]


async def test_an_advance_retried_after_its_status_write_failed_enqueues_nothing_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue #13, problem 5: enqueueing came before the status write, so every retry of a
    failed advance enqueued the same attempts again and running ones executed twice."""
    writes: list[dict[str, Any]] = []

    async def patch_status(api: Any, namespace: str, name: str, change: Any) -> bool:
        writes.append(change)
        if len(writes) == 1:
            raise ApiError(status=Status(code=504, message="timeout"))  # type: ignore[call-arg]
        return True

    async def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(wfapply.statuses, "patch_workflow_status", patch_status)
    results = RecordingResults()
    subject = Driver(results, None, "redis://", "image")  # type: ignore[arg-type]
    monkeypatch.setattr(subject.owner, "ensure", nothing)
    workflow = tracked("w")
    workflow.status = WorkflowStatus(run_generation=1)
    with pytest.raises(ApiError):
        await subject.advance(workflow, [], UTC_NOW)
    await subject.advance(workflow, [], UTC_NOW)  # the driver tries again
    assert results.enqueued == [("w/g1/a/-", 1)]
    assert len(writes) == 2


async def test_set_aside_entries_are_told_on_the_workflow_at_most_once_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    posted: list[tuple[str, str, str]] = []

    async def post(api: Any, about: Any, type: str, reason: str, message: str) -> None:
        posted.append((about.name, reason, message))

    class Asides:
        asides: list[tuple[str, str]] = []

    monkeypatch.setattr(wfapply.events, "post", post)
    subject = Driver(Asides(), None, "redis://", "image")  # type: ignore[arg-type]
    subject.workflows["w"] = tracked("w")
    served: dict[str, dict[str, Any]] = {"wf-w": {"w": None}}
    subject.results.asides = [("wf-w", "not a task result: junk"), ("wf-w", "forged")]
    await subject.intake.tell_asides(served)
    subject.results.asides = [("wf-w", "more junk")]
    await subject.intake.tell_asides(served)  # within the minute: counted, not told
    assert [(name, reason) for name, reason, _ in posted] == [("w", "ResultSetAside")]
    assert posted[0][2].startswith("2 entries of this workflow's result stream were no result")
    assert "(the first: not a task result: junk)" in posted[0][2]
    subject.intake.asides.told_at["wf-w"] -= asides.EVENT_INTERVAL
    subject.results.asides = [("wf-w", "again")]
    await subject.intake.tell_asides(served)
    assert posted[1][2].startswith("2 entries")  # the one untold and the new one


async def test_a_workflow_deleted_while_a_pass_read_its_set_aside_entries_fails_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue #31, problem 4: deleting workflows mid-pass raised KeyError in the driver."""
    posted: list[str] = []

    async def post(api: Any, about: Any, type: str, reason: str, message: str) -> None:
        posted.append(about.name)

    class Asides:
        asides: list[tuple[str, str]] = []

    monkeypatch.setattr(wfapply.events, "post", post)
    subject = Driver(Asides(), None, "redis://", "image")  # type: ignore[arg-type]
    subject.workflows["kept"] = tracked("kept")
    served: dict[str, dict[str, Any]] = {"pool": {"gone": None, "kept": None}}
    subject.results.asides = [("pool", "junk")]
    await subject.intake.tell_asides(served)
    assert posted == ["kept"]


def test_only_a_server_away_fails_a_pass_not_one_workflows_own_failure() -> None:
    """Issue #31, problem 2: one workflow's failure, when it was the only work of a pass,
    failed the pass and backed the loop off for everyone (31.5 s seen)."""
    from lightkube.models.meta_v1 import Status
    from redis.exceptions import ConnectionError as RedisConnectionError

    assert sidebyside._away(RedisConnectionError("gone"))
    assert sidebyside._away(ApiError(status=Status(code=503)))  # type: ignore[call-arg]
    assert not sidebyside._away(ApiError(status=Status(code=422)))  # type: ignore[call-arg]
    assert not sidebyside._away(ValueError("surrogates not allowed"))
    assert not sidebyside._away(RecursionError())


async def test_a_namespace_past_its_cpu_share_waits_a_pass_and_others_go_first() -> None:
    """Issue #31, problem 3: one tenant's costly templates slowed every tenant's workflows."""
    advanced: list[str] = []

    async def advance(
        t: Tracked, results: list[TaskResult], now: datetime
    ) -> list[tuple[str, str]]:
        advanced.append(t.who.name)
        share = sidebyside.NAMESPACE_CPU_PER_PASS_SECONDS
        t.engine_cpu_seconds = share * 0.6 if t.who.namespace == "heavy" else 0.0001
        return []

    subject = bare_driver(advance)
    heavy = [tracked(f"h{i}", namespace="heavy") for i in range(5)]
    light = [tracked(f"l{i}") for i in range(3)]
    for one in heavy + light:
        subject.workflows[one.who.uid] = one
    now = datetime.now(UTC)
    await subject._advance_all([(t, []) for t in heavy + light], now)
    assert {"l0", "l1", "l2"} <= set(advanced)
    assert sum(name.startswith("h") for name in advanced) == 2  # 0.6 + 0.6 of its share
    assert all(t.due == now for t in heavy if t.who.name not in advanced)
    advanced.clear()
    await subject._advance_all([(t, []) for t in heavy + light], now)
    assert advanced[:3] == ["l0", "l1", "l2"]  # the namespace that spent least goes first


async def test_news_from_the_watch_during_an_advance_gets_the_workflow_advanced_again() -> None:
    """The scheduler's lost wake-up (a 24-slot backfill stalled on CI) had a twin here: a spec
    edit (resume, shutdown) or a worker pod gone, told while the workflow was being advanced,
    was overwritten by the `due` the advance decided without it."""
    later = UTC_NOW.replace(year=UTC_NOW.year + 1)

    async def advance(t: Tracked, results: list[TaskResult], now: datetime) -> list[str]:
        bare.worker_pod_gone(t.who.uid)  # arrives from the watch mid-advance
        t.due = later  # what the advance decided from what it had seen
        return []

    edited = tracked("edited")
    bare = bare_driver(advance)
    bare.workflows["edited"] = edited
    await bare._advance_all([(edited, [])], UTC_NOW)
    assert edited.due == UTC_NOW
    edited.due = None

    async def quiet(t: Tracked, results: list[TaskResult], now: datetime) -> list[str]:
        t.due = later
        return []

    bare.advance = quiet  # type: ignore[method-assign]
    await bare._advance_all([(edited, [])], UTC_NOW)
    assert edited.due == later  # no news: the advance's own `due` stands
