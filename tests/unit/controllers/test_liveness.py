"""/livez is answered by the event loop itself: it stops answering while the loop is stuck,
where /metrics (prometheus_client's own thread) went on answering (issue #13, problem 1)."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request

from treadle.controllers import liveness


def block_the_loop(seconds: float) -> None:
    """What a CPU-bound handler does to the loop it runs on."""
    time.sleep(seconds)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(
    port: int, path: str = "/livez", timeout: float = 1.0, after: float = 0.0
) -> tuple[int, bytes]:
    time.sleep(after)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
        return reply.status, reply.read()


async def test_livez_answers_while_the_loop_runs_and_not_while_it_is_stuck() -> None:
    port = free_port()
    server = await liveness.serve("127.0.0.1", port)
    try:
        assert await asyncio.to_thread(get, port) == (200, b"ok\n")
        # A probe made while a handler blocks the loop (the thread asks 0.1 s into the block).
        loop = asyncio.get_running_loop()
        asking = loop.run_in_executor(None, get, port, "/livez", 0.5, 0.1)  # starts at once
        block_the_loop(1.0)
        try:
            await asking
            answered = True
        except OSError:  # timed out: the probe fails, the kubelet restarts the pod
            answered = False
        assert not answered
        assert await asyncio.to_thread(get, port) == (200, b"ok\n")
    finally:
        server.close()
        await server.wait_closed()


async def test_other_paths_are_not_found() -> None:
    port = free_port()
    server = await liveness.serve("127.0.0.1", port)
    try:
        try:
            await asyncio.to_thread(get, port, "/other")
            found = True
        except urllib.error.HTTPError as error:
            found = error.code != 404
        assert not found
    finally:
        server.close()
        await server.wait_closed()
