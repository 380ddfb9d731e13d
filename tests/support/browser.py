"""A real headless browser for the UI tests: Debian's `chromium`, driven over the Chrome DevTools
Protocol (a websocket, with aiohttp): open a page, evaluate JavaScript in it, wait for what it
shows, take a screenshot.  No WebDriver and no browser download: the test set-up installs the
Debian package (hack/redis.sh install)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from support import processes

START_SECONDS = 30.0


class BrowserError(AssertionError):
    pass


def launch(profile: Path, width: int, height: int) -> tuple[subprocess.Popen[bytes], int]:
    """Starts chromium with its DevTools on a free port; the process and that port."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise BrowserError("no chromium: run hack/redis.sh install (Debian's chromium)")
    profile.mkdir(parents=True, exist_ok=True)
    with (profile / "chromium.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--remote-debugging-port=0", "--remote-allow-origins=*",
                f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )  # fmt: skip
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if active.exists() and active.read_text().strip():
            return process, int(active.read_text().split()[0])
        if process.poll() is not None:
            raise BrowserError(f"chromium exited: {(profile / 'chromium.log').read_text()}")
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise BrowserError(f"chromium did not start in {START_SECONDS:g} s")


class Browser:
    def __init__(self, process: subprocess.Popen[bytes], session: aiohttp.ClientSession) -> None:
        self.process = process
        self.session = session
        self.socket: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    @classmethod
    async def start(cls, profile: Path, width: int = 1400, height: int = 900) -> Browser:
        process, port = await asyncio.to_thread(launch, profile, width, height)
        browser = cls(process, aiohttp.ClientSession())
        async with browser.session.get(f"http://127.0.0.1:{port}/json/list") as reply:
            targets = await reply.json()
        page = next(t for t in targets if t.get("type") == "page")
        browser.socket = await browser.session.ws_connect(
            page["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024
        )
        await browser.send("Page.enable")
        await browser.send("Runtime.enable")
        return browser

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.socket is not None
        ident = next(self._ids)
        await self.socket.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads((await self.socket.receive(timeout=60)).data)
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result") or {}
                return result

    async def open(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when a promise)."""
        answer = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            raise BrowserError(f"{expression}: {answer['exceptionDetails']}")
        return answer.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout_seconds: float = 60.0) -> Any:
        """Waits until the expression is truthy in the page; returns its value."""
        value = None
        for _ in range(int(timeout_seconds / 0.2)):
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        text = await self.evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")
        raise BrowserError(f"never true: {expression} (last {value!r}); the page says:\n{text}")

    async def screenshot(self) -> bytes:
        """The page as a PNG."""
        shot = await self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        await self.session.close()
        processes.stop(self.process)
