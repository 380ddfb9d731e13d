"""A cancellation token: a one-way signal that asks loops and actions to stop."""

from __future__ import annotations

import asyncio


class CancelToken:
    """Set once; every waiter wakes.  Child tokens are cancelled with their parent."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._children: list[CancelToken] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()
        for child in self._children:
            child.cancel()

    def child(self) -> CancelToken:
        token = CancelToken()
        if self.cancelled:
            token.cancel()
        self._children.append(token)
        return token

    async def wait(self) -> None:
        await self._event.wait()


def checkpoint() -> None:
    """Raises CancelledError if the current task was asked to stop.

    Python 3.11's `asyncio.wait_for`, which redis-py calls on every command it sends, swallows
    a cancellation that arrives just as the awaited call ends (fixed in 3.12): the caller sees
    a normal return.  A loop that only stops by being cancelled would then run on for ever and
    whoever waits for it hangs; calling this once a round stops it at the next one."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
