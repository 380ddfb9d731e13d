"""A plain python callable cannot outlive its timeout, nor freeze its worker unnoticed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from treadle.worker import interrupts


def spinner(stopped: list[str]) -> Callable[[], None]:
    """A plain function looping for ever, noting in `stopped` when it is interrupted."""

    def spin() -> None:
        try:
            while True:
                pass
        except interrupts.Interrupted:
            stopped.append("interrupted")
            raise

    return spin


async def test_a_python_loop_past_its_timeout_is_interrupted_in_its_thread() -> None:
    """Issue #31, problem 4: a sync callable ran on past its timeoutSeconds."""
    stopped: list[str] = []
    spin = spinner(stopped)
    with pytest.raises(TimeoutError):
        await interrupts.call_in_thread(spin, {}, 0.2)
    assert stopped == ["interrupted"]


async def test_a_callable_that_ends_in_time_gives_its_result() -> None:
    assert await interrupts.call_in_thread(lambda n: n * 2, {"n": 21}, 5) == 42


def test_the_watchdog_kills_a_process_whose_event_loop_stops_beating() -> None:
    """A callable holding the GIL froze the worker's keep-alives; the reaper gave its attempt
    to another worker while it still ran.  Now the frozen worker is killed first."""
    frozen = (
        "import asyncio, time\n"
        "from treadle.worker import interrupts\n"
        "async def main():\n"
        "    dog = interrupts.Watchdog(0.5)\n"
        "    dog.start()\n"
        "    beating = asyncio.ensure_future(dog.beat())\n"
        "    await asyncio.sleep(0.3)\n"
        "    time.sleep(30)  # the loop stops here, as with C code holding the GIL\n"
        "asyncio.run(main())\n"
    )
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-c", frozen], capture_output=True, text=True, timeout=20,
        env={**os.environ},
    )  # fmt: skip
    assert process.returncode == -9
    assert time.monotonic() - started < 5
    assert "no heartbeat from the worker's event loop" in process.stderr


def test_a_beating_process_is_left_alone_and_its_watchdog_ends_with_it() -> None:
    alive = (
        "import asyncio\n"
        "from treadle.worker import interrupts\n"
        "async def main():\n"
        "    dog = interrupts.Watchdog(0.4)\n"
        "    dog.start()\n"
        "    beating = asyncio.ensure_future(dog.beat())\n"
        "    await asyncio.sleep(1.5)\n"
        "    beating.cancel()\n"
        "    dog.stop()\n"
        "asyncio.run(main())\n"
    )
    process = subprocess.run([sys.executable, "-c", alive], capture_output=True, timeout=20)
    assert process.returncode == 0


async def test_cancelling_the_call_interrupts_its_thread() -> None:
    stopped: list[str] = []
    spin = spinner(stopped)
    call = asyncio.ensure_future(interrupts.call_in_thread(spin, {}, 30))
    await asyncio.sleep(0.1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(50):
        if stopped:
            break
        await asyncio.sleep(0.02)
    assert stopped == ["interrupted"]
