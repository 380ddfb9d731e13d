from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from treadle.runtime import CancelToken, Directive

HOUR = 3600.0


def now() -> float:
    return asyncio.get_running_loop().time()


def cancel_after(token: CancelToken, seconds: float) -> asyncio.Task[None]:
    async def later() -> None:
        await asyncio.sleep(seconds)
        token.cancel()

    return asyncio.create_task(later())


@dataclass
class Recorder:
    """An action scripted by a function of the call index; records call start times."""

    script: Callable[[int], Directive]
    work_seconds: Callable[[int], float] = lambda _: 0.0
    starts: list[float] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.starts)

    async def execute(self, cancel: CancelToken) -> Directive:
        index = len(self.starts)
        self.starts.append(now())
        if self.work_seconds(index):
            await asyncio.sleep(self.work_seconds(index))
        return self.script(index)


async def until(check: Callable[[], Awaitable[bool]], timeout_seconds: float = 10.0) -> None:
    """Waits (in real time) until `check` holds: for what another process or server does."""
    step = 0.05
    for _ in range(int(timeout_seconds / step)):
        if await check():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"not so within {timeout_seconds:g} s")
