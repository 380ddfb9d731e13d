"""A worker stops when it is closed, even when a Redis call lost the cancellation.

Python 3.11's `asyncio.wait_for`, which redis-py calls for each command it sends, returns
normally when a cancel arrives just as the call ends: the CancelledError is lost.  The
worker's helper loops (keeping messages alive, copying live logs, watching for terminated
workflows) only stop by being cancelled, so one lost cancel made `close()` wait for ever
(seen in CI).  The fake queue below loses every cancel that reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, cast

import pytest

from treadle.core.messages import TaskMessage, TaskResult
from treadle.runtime import CancelToken, checkpoint
from treadle.services.queues import Delivery
from treadle.worker.serving import TaskWorker

pytestmark = pytest.mark.looptime


class LosingQueue:
    """Hands out one message that already succeeded; its keep-alive loses the first cancel."""

    pool = "p"

    def __init__(self) -> None:
        self.keep_alives = 0
        self.lost = 0
        self.inside = asyncio.Event()

    async def read(self, count: int, block_ms: int) -> list[Delivery]:
        message = TaskMessage("uid", "ns/wf", "t", None, 1, {"command": {"args": ["true"]}}, 10)
        return [Delivery("1-0", message)]

    async def already_settled(self, deliveries: Sequence[Delivery]) -> list[bool]:
        return [True for _ in deliveries]

    async def store_outputs(self, results: Sequence[TaskResult]) -> list[TaskResult]:
        return list(results)

    async def finish(self, done: Sequence[tuple[Delivery, TaskResult | None]]) -> list[bool]:
        return [True for _ in done]

    async def keep_alive(self, deliveries: Sequence[Delivery]) -> None:
        self.keep_alives += 1
        self.inside.set()
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            if self.lost:
                raise  # (so that a failing test still ends)
            self.lost += 1  # lost, as 3.11's wait_for loses it


async def test_close_ends_the_helper_loops_though_a_redis_call_lost_the_cancel() -> None:
    queue = LosingQueue()
    worker = TaskWorker(cast(Any, queue), keep_alive_seconds=0)
    await worker.execute(CancelToken())
    await queue.inside.wait()  # the cancel lands in the keep-alive's call
    closing = asyncio.create_task(worker.close())
    done, _ = await asyncio.wait({closing}, timeout=10)
    assert done, "close() hangs: a helper loop runs on after its cancel was lost"
    assert queue.lost == 1
    assert worker.skipped == 1


async def test_checkpoint_raises_once_the_task_was_asked_to_stop() -> None:
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            checkpoint()
            rounds += 1
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(1)  # a call that loses the cancel

    task = asyncio.create_task(loop())
    await asyncio.sleep(2.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rounds == 3
