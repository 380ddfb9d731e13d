"""The liveness endpoint, answered by the operator's own event loop.

Served from the first moment (a standby waiting for the Lease answers too), with nothing in
its way: when a handler or a pass blocks the loop, `/livez` stops answering and the kubelet
restarts the pod.  `/metrics`, served by prometheus_client from its own thread, answered
while the loop was stuck (issue #13, problem 1), so it cannot tell a wedged operator.
"""

from __future__ import annotations

import asyncio
import contextlib

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
    b"Connection: close\r\n\r\nok\n"
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
READ_TIMEOUT_SECONDS = 5.0
MAX_REQUEST_BYTES = 8192


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            head = await reader.readuntil(b"\r\n\r\n")
        request_line = head[:MAX_REQUEST_BYTES].split(b"\r\n", 1)[0].split()
        path = request_line[1] if len(request_line) > 1 else b""
        writer.write(RESPONSE if path.split(b"?")[0] in (b"/livez", b"/healthz") else NOT_FOUND)
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def serve(host: str, port: int) -> asyncio.Server:
    """Starts answering `GET /livez` on host:port from this event loop."""
    return await asyncio.start_server(_answer, host, port, limit=MAX_REQUEST_BYTES)
