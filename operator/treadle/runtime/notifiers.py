"""Notifiers: wake-ups for idle loops, with a stored permit so that no wake-up is lost.

`notify()` wakes one waiting loop; with nobody waiting it stores a single permit that the next
wait takes at once (several notifies before a wait collapse into one).  A loop may wait on many
notifiers; whichever fires first wakes it, and the others keep their permits for later.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Sequence

from treadle.runtime.cancellation import CancelToken


class Notify:
    def __init__(self) -> None:
        self._waiters: collections.deque[asyncio.Future[Notify]] = collections.deque()
        self._permit = False

    def notify(self) -> None:
        """Wake one waiter, or keep a permit for the next wait."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self)
                return
        self._permit = True

    def notify_waiters(self) -> None:
        """Wake every current waiter; store no permit."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self)

    def _take_permit(self) -> bool:
        taken, self._permit = self._permit, False
        return taken

    async def wait(self) -> None:
        await wait_any([self])


async def wait_any(notifiers: Sequence[Notify]) -> Notify:
    """Waits until any of `notifiers` fires; returns the one that did."""
    for notifier in notifiers:
        if notifier._take_permit():
            return notifier
    waiter: asyncio.Future[Notify] = asyncio.get_running_loop().create_future()
    for notifier in notifiers:
        notifier._waiters.append(waiter)
    try:
        return await waiter
    except asyncio.CancelledError:
        # Woken and cancelled at once: hand the wake-up on rather than lose it.
        if waiter.done() and not waiter.cancelled():
            waiter.result().notify()
        raise
    finally:
        for notifier in notifiers:
            with contextlib.suppress(ValueError):
                notifier._waiters.remove(waiter)


async def poke(notifier: Notify, interval_seconds: float, cancel: CancelToken) -> None:
    """Notifies every `interval_seconds` until cancelled: a safety net for event-driven loops."""
    if interval_seconds <= 0:
        raise ValueError("a poker needs a positive interval")
    stopped = asyncio.ensure_future(cancel.wait())
    try:
        while True:
            done, _ = await asyncio.wait({stopped}, timeout=interval_seconds)
            if done:
                return
            notifier.notify()
    finally:
        stopped.cancel()


def poker(interval_seconds: float, cancel: CancelToken) -> tuple[Notify, asyncio.Task[None]]:
    """A notifier that fires every `interval_seconds`, and the task that drives it."""
    notifier = Notify()
    task = asyncio.create_task(poke(notifier, interval_seconds, cancel), name="poker")
    return notifier, task
