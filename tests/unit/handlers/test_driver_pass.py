"""The driver advances workflows side by side, bounded, and one failure costs no other
workflow its acknowledgements."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from treadle.api.workflows import WorkflowSpec
from treadle.core import engine
from treadle.core.messages import TaskResult
from treadle.handlers import driver
from treadle.handlers.driver import Driver, Tracked

SPEC = WorkflowSpec.model_validate({"tasks": [{"name": "a", "python": {"callable": "time:time"}}]})


def tracked(name: str) -> Tracked:
    who = engine.Identity(uid=name, name=name, namespace="ns", pool=f"wf-{name}")
    return Tracked(who, SPEC, {}, 1)


def bare_driver(advance: Any) -> Driver:
    bare: Driver = object.__new__(Driver)
    bare.advance = advance  # type: ignore[method-assign]
    return bare


async def test_workflows_are_advanced_side_by_side_at_most_the_limit_at_once() -> None:
    running, most = 0, 0
    release = asyncio.Event()

    async def advance(t: Tracked, results: list[TaskResult], now: datetime) -> list[str]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return [f"{t.who.name}-result"]

    work = [(tracked(f"w{i}"), []) for i in range(100)]
    passing = asyncio.create_task(bare_driver(advance)._advance_all(work, datetime.now(UTC)))
    for _ in range(10):
        await asyncio.sleep(0)
    assert running == driver.ADVANCE_CONCURRENCY  # all at once, up to the limit
    release.set()
    acked, failure = await passing
    assert failure is None
    assert most == driver.ADVANCE_CONCURRENCY
    assert sorted(acked) == sorted(f"w{i}-result" for i in range(100))


async def test_one_workflow_failing_costs_the_others_nothing() -> None:
    async def advance(t: Tracked, results: list[TaskResult], now: datetime) -> list[str]:
        if t.who.name == "broken":
            raise RuntimeError("API server said no")
        return [f"{t.who.name}-result"]

    work = [(tracked(name), []) for name in ("first", "broken", "last")]
    acked, failure = await bare_driver(advance)._advance_all(work, datetime.now(UTC))
    assert sorted(acked) == ["first-result", "last-result"]
    assert isinstance(failure, RuntimeError)


async def test_a_cancelled_pass_is_cancelled_not_reported_as_a_failure() -> None:
    async def advance(t: Tracked, results: list[TaskResult], now: datetime) -> list[str]:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await bare_driver(advance)._advance_all([(tracked("w"), [])], datetime.now(UTC))
