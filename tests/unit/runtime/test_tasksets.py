"""A task set reports crashes, keeps siblings alive and shuts down within its limits."""

from __future__ import annotations

import asyncio

import pytest

from support.loops import HOUR, Recorder, now
from treadle.runtime import CancelToken, Directive, Loop, PanicPolicy, TaskSet

pytestmark = pytest.mark.looptime


def idle_loop(name: str, tasks: TaskSet) -> Loop:
    return Loop(
        name, Recorder(script=lambda _: Directive.sleep(1)), tasks.cancel, start=Directive.proceed()
    )


async def test_a_crash_is_reported_and_the_sibling_keeps_running() -> None:
    tasks = TaskSet()

    def fail(_: int) -> Directive:
        raise RuntimeError("fatal")

    crashing = Loop(
        "crashing",
        Recorder(script=fail),
        tasks.cancel,
        start=Directive.proceed(),
        panic_policy=PanicPolicy.PROPAGATE,
    )
    tasks.spawn("crashing", crashing.run())
    tasks.spawn("steady", idle_loop("steady", tasks).run())
    await asyncio.sleep(5)
    assert tasks.running == ["steady"]
    assert [(c.name, str(c.error)) for c in tasks.crashes] == [("crashing", "fatal")]
    assert await tasks.shutdown() == []


async def test_shutdown_waits_for_a_loop_that_ignores_cancellation_for_a_while() -> None:
    tasks = TaskSet()

    async def stubborn() -> None:
        try:
            await tasks.cancel.wait()
            await asyncio.sleep(HOUR)
        except asyncio.CancelledError:
            await asyncio.sleep(3)  # cleans up for 3 s before it gives in

    tasks.spawn("stubborn", stubborn())
    tasks.spawn("steady", idle_loop("steady", tasks).run())
    await asyncio.sleep(1)
    stuck = await tasks.shutdown(grace_seconds=2, kill_seconds=5)
    assert stuck == []
    assert now() == 1 + 2 + 3
    assert tasks.running == []


async def test_shutdown_reports_a_task_that_never_stops() -> None:
    tasks = TaskSet()
    release = asyncio.Event()

    async def deaf() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(HOUR)
            except asyncio.CancelledError:
                continue

    task = tasks.spawn("deaf", deaf())
    stuck = await tasks.shutdown(grace_seconds=1, kill_seconds=1)
    assert stuck == ["deaf"]
    release.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_name_can_run_only_once_at_a_time() -> None:
    tasks = TaskSet()
    tasks.spawn("one", idle_loop("one", tasks).run())
    with pytest.raises(ValueError, match="already running"):
        tasks.spawn("one", idle_loop("one", tasks).run())
    await tasks.shutdown()


async def test_child_tokens_are_cancelled_with_their_parent() -> None:
    parent = CancelToken()
    child = parent.child()
    parent.cancel()
    await asyncio.wait_for(child.wait(), timeout=1)
