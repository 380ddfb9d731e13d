"""A supervised set of named loops: spawn, report crashes, shut down gracefully.

One loop's crash never takes a sibling down; every crash is logged and kept in `crashes`.
`shutdown` cancels the set's token (loops finish their current step and return), waits up to
`grace_seconds`, then cancels the tasks still running and waits up to `kill_seconds` more; a
loop that ignores even that is reported in the result as stuck.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from treadle.runtime.cancellation import CancelToken

log = logging.getLogger("treadle.runtime")


@dataclass(frozen=True)
class Crash:
    name: str
    error: BaseException


@dataclass
class TaskSet:
    cancel: CancelToken = field(default_factory=CancelToken)
    tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    crashes: list[Crash] = field(default_factory=list)

    def spawn(self, name: str, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        if name in self.tasks and not self.tasks[name].done():
            coroutine.close()
            raise ValueError(f"a task named {name!r} is already running")
        task = asyncio.create_task(coroutine, name=name)
        task.add_done_callback(self._finished)
        self.tasks[name] = task
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.crashes.append(Crash(task.get_name(), error))
            log.error("task %s crashed", task.get_name(), exc_info=error)

    @property
    def running(self) -> list[str]:
        return sorted(name for name, task in self.tasks.items() if not task.done())

    async def shutdown(self, grace_seconds: float = 10.0, kill_seconds: float = 5.0) -> list[str]:
        """Stops every task; returns the names of those that would not stop."""
        self.cancel.cancel()
        pending = {t for t in self.tasks.values() if not t.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace_seconds)
        for task in pending:
            log.warning(
                "task %s did not stop in %.1f s; cancelling it", task.get_name(), grace_seconds
            )
            task.cancel()
        if pending:
            _, pending = await asyncio.wait(pending, timeout=kill_seconds)
        stuck = sorted(task.get_name() for task in pending)
        for name in stuck:
            log.error("task %s ignored cancellation for %.1f s", name, kill_seconds)
        return stuck
