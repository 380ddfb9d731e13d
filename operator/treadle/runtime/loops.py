"""The loop: run an action, then proceed, idle or sleep as it says; survive its errors.

A loop starts idle (waiting for one of its notifiers, unless told to start at once), runs its
action inside its bulkhead's semaphore, and follows the returned directive.  An exception from
the action is an error: the loop backs off (escalating, reset by the next success) and runs the
action again; with `PanicPolicy.PROPAGATE` the exception ends the loop instead.  Cancellation
(the token, or cancelling the task) is prompt in every state: during the action, idle, sleep and
backoff.  All waiting uses the event loop's clock, so tests run it on virtual time.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from treadle.runtime.bulkheads import Bulkhead
from treadle.runtime.cancellation import CancelToken
from treadle.runtime.directives import Directive, Next
from treadle.runtime.listeners import Listener, Listeners, default_listeners
from treadle.runtime.notifiers import Notify, wait_any
from treadle.runtime.pacing import Pacing

T = TypeVar("T")


class Action(Protocol):
    async def execute(self, cancel: CancelToken) -> Directive:
        """One unit of work; raises on error."""
        ...


class PanicPolicy(enum.Enum):
    CATCH = "catch"
    """An exception is an error: the loop backs off and goes on (the default)."""
    PROPAGATE = "propagate"
    """An exception ends the loop and propagates to whoever awaits it."""


class LoopCancelled(Exception):
    """Internal: the token fired while the loop waited."""


@dataclass
class Loop:
    name: str
    action: Action
    cancel: CancelToken
    notifiers: Sequence[Notify] = ()
    pacing: Pacing = field(default_factory=Pacing)
    bulkhead: Bulkhead = field(default_factory=Bulkhead)
    listeners: Sequence[Listener] = field(default_factory=default_listeners)
    panic_policy: PanicPolicy = PanicPolicy.CATCH
    start: Directive = field(default_factory=Directive.idle)
    """What the loop does before its first execution; idle waits for a notifier."""

    def __post_init__(self) -> None:
        self._hooks = Listeners(self.listeners)
        self._check(self.start)

    def _check(self, directive: Directive) -> None:
        if directive.next is Next.IDLE and not self.notifiers:
            raise ValueError(f"loop {self.name}: idle needs at least one notifier")

    async def run(self) -> None:
        """Runs until the token is cancelled (returns) or the task is cancelled (raises)."""
        self._hooks.on_start(self.name)
        try:
            await self._run()
        except LoopCancelled:
            pass
        finally:
            self._hooks.on_stop(self.name)

    async def _run(self) -> None:
        clock = asyncio.get_running_loop()
        directive = self.start
        proceeds = 0
        last_start: float | None = None
        while True:
            if directive.next is Next.IDLE:
                proceeds = 0
                await self._until_cancelled(wait_any(self.notifiers))
            elif directive.next is Next.SLEEP:
                proceeds = 0
                await self._sleep(directive.seconds)
            else:
                proceeds += 1
                if last_start is not None:
                    await self._sleep(self.pacing.pause_after_proceed(proceeds))
            await self._sleep(self.pacing.floor_wait(last_start, clock.time()))
            last_start = clock.time()
            directive = await self._execute_once()

    async def _execute_once(self) -> Directive:
        try:
            async with self.bulkhead.slot():
                directive = await self._until_cancelled(self.action.execute(self.cancel))
            if not isinstance(directive, Directive):
                raise TypeError(f"execute() returned {directive!r}, not a Directive")
            self._check(directive)
        except (LoopCancelled, asyncio.CancelledError):
            raise
        except Exception as error:
            if self.panic_policy is PanicPolicy.PROPAGATE:
                self._hooks.on_error(self.name, error, 0.0)
                raise
            backoff = self.bulkhead.failed()
            self._hooks.on_error(self.name, error, backoff)
            await self._sleep(backoff)
            return Directive.proceed()
        self.bulkhead.succeeded()
        self._hooks.on_directive(self.name, directive)
        return directive

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            await self._until_cancelled(asyncio.sleep(seconds))
        elif self.cancel.cancelled:
            raise LoopCancelled

    async def _until_cancelled(self, awaitable: Awaitable[T]) -> T:
        """Awaits `awaitable` unless the token fires first, in which case it is cancelled."""
        if self.cancel.cancelled:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise LoopCancelled
        work: asyncio.Future[T] = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self.cancel.wait())
        either: set[asyncio.Future[Any]] = {work, stop}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            stop.cancel()
            await asyncio.gather(work, stop, return_exceptions=True)
            raise
        if work.done():
            stop.cancel()
            return work.result()
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        raise LoopCancelled
