"""A plain (sync) `python:` callable cannot outlive its timeout, nor freeze its worker.

It runs in a thread of the worker (a process per call would cost more than most such tasks
take).  Past its timeout, the thread is interrupted: TimeoutError is raised inside it at its
next bytecode (CPython's PyThreadState_SetAsyncExc), so a loop in Python ends there.  What no
thread can interrupt is C code that holds the GIL (a regular expression gone exponential, a
huge sort): the whole worker stops with it, its keep-alives too, and the reaper would hand its
attempts to another worker while it still runs them.  The worker's Watchdog, a process of its
own, kills such a frozen worker first; its attempts then go elsewhere exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import functools
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)


class Interrupted(TimeoutError):
    """Raised inside a callable's thread when its time is up."""


class _Call:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread: int | None = None
        self.done = False

    def run(self, function: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
        with self.lock:
            self.thread = threading.get_ident()
        try:
            return function(**kwargs)
        finally:
            with self.lock:
                self.done = True

    def interrupt(self) -> bool:
        """Raises Interrupted in the thread while the callable still runs there."""
        with self.lock:
            if self.done or self.thread is None:
                return False
            hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.thread), ctypes.py_object(Interrupted)
            )
            return bool(hit == 1)


async def call_in_thread(
    function: Callable[..., Any], kwargs: Mapping[str, Any], timeout_seconds: float
) -> Any:
    """`function(**kwargs)` in a thread; TimeoutError after `timeout_seconds`, with the
    thread interrupted (it ends at its next bytecode)."""
    loop = asyncio.get_running_loop()
    call = _Call()
    context = contextvars.copy_context()  # the attempt's log capture goes along
    started = loop.time()
    running = loop.run_in_executor(None, functools.partial(context.run, call.run, function, kwargs))
    try:
        result = await asyncio.wait_for(asyncio.shield(running), timeout_seconds)
    except TimeoutError:
        call.interrupt()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(running), 1.0)
        raise
    except asyncio.CancelledError:
        call.interrupt()
        raise
    if loop.time() - started > timeout_seconds:
        # The worker was frozen past the deadline (the callable held the GIL) and the result
        # came in with the timer: it is too late all the same.
        raise TimeoutError
    return result


WATCHDOG = r"""
import os, select, signal, sys
parent, limit = int(sys.argv[1]), float(sys.argv[2])
while True:
    ready, _, _ = select.select([0], [], [], limit)
    if not ready:
        sys.stderr.write(
            "treadle worker: no heartbeat from the worker's event loop for %g s (a task holding "
            "the GIL?): killing it, so that its attempts go to another worker once\n" % limit)
        sys.stderr.flush()
        os.kill(parent, signal.SIGKILL)
        sys.exit(0)
    if not os.read(0, 4096):
        sys.exit(0)
"""


class Watchdog:
    """A process that kills this one when its event loop stops beating for `limit_seconds`
    (less than the reaper's idle time, so no attempt of a frozen worker runs twice at once)."""

    def __init__(self, limit_seconds: float) -> None:
        self.limit_seconds = limit_seconds
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(self.limit_seconds)],
            stdin=subprocess.PIPE,
        )

    async def beat(self) -> None:
        """Beats until cancelled (a task of the worker's event loop)."""
        if self._process is None or self._process.stdin is None:
            raise RuntimeError("start() the watchdog before it beats")
        descriptor = self._process.stdin.fileno()
        while True:
            with contextlib.suppress(OSError):
                os.write(descriptor, b".")
            await asyncio.sleep(self.limit_seconds / 4)

    def stop(self) -> None:
        if self._process is not None and self._process.stdin is not None:
            self._process.stdin.close()  # EOF: the watchdog exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)
