"""Tenant-sized work (templates rendered and checked, a workflow's engine step) runs in one
thread beside the event loop, not on it.

One thread, not a pool: CPython lets a waiting thread take the GIL every switch interval
(5 ms), but among many busy threads the event loop's turn can come seconds late (a pool of six
rendering threads left /healthz waiting 1.3 s at p99).  With one, the loop waits 5 ms at most
for its turn, and the tenant work is bounded per call besides (sandbox and engine budgets).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tenant-work")


async def offload(function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """`function(*args, **kwargs)` in the tenant-work thread, with the caller's context."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
    return await loop.run_in_executor(_THREAD, call)
