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
