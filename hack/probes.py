"""Readiness, liveness and startup probes (httpGet, tcpSocket, exec), as a kubelet runs them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from agentcommon import Json
from containers import ContainerState

log = logging.getLogger("nodeagent.probes")


@dataclass(frozen=True)
class Target:
    """Where a container's probes run: its environment and directory for exec probes, the
    pod's IP for httpGet and tcpSocket, and how an exec probe enters the pod (its network)."""

    env: dict[str, str]
    cwd: str
    host: str = "127.0.0.1"
    enter: Callable[[], None] | None = None


def _port(container: Json, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"unknown named port {port}")


async def probe_once(probe: Json, container: Json, target: Target) -> bool:
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if probe.get("httpGet"):
            spec = probe["httpGet"]
            scheme = (spec.get("scheme") or "HTTP").lower()
            host, port = spec.get("host") or target.host, _port(container, spec["port"])
            url = f"{scheme}://{host}:{port}{spec.get('path') or '/'}"
            headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.get(url, headers=headers, ssl=False) as response,
            ):
                return 200 <= response.status < 400
        if probe.get("tcpSocket"):
            port = _port(container, probe["tcpSocket"]["port"])
            _, writer = await asyncio.wait_for(asyncio.open_connection(target.host, port), timeout)
            writer.close()
            return True
        if probe.get("exec"):
            process = await asyncio.create_subprocess_exec(
                *probe["exec"]["command"],
                env=target.env,
                cwd=target.cwd,
                preexec_fn=target.enter,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                return await asyncio.wait_for(process.wait(), timeout) == 0
            except TimeoutError:
                process.kill()
                await process.wait()
                return False
    except (OSError, TimeoutError, aiohttp.ClientError, ValueError):
        return False
    log.warning("unsupported probe %s; treating it as passing", sorted(probe))
    return True


async def run(
    container: ContainerState,
    target: Target,
    started: asyncio.Event | None,
    *,
    changed: Callable[[], None],
    restart: Callable[[], Awaitable[None]],
    pod: str,
) -> None:
    """Runs a started container's probes until it ends: startup first, then readiness (which
    sets it ready) and liveness (which restarts it); `started` is set once it is ready."""
    spec = container.spec
    startup, readiness, liveness = (
        spec.get("startupProbe"),
        spec.get("readinessProbe"),
        spec.get("livenessProbe"),
    )
    if startup and not await _until_success(startup, container, target):
        await restart()
        return
    container.started = True
    if readiness is None:
        container.ready = True
    changed()
    if started and readiness is None:
        started.set()
    loops = []
    if readiness:
        loops.append(_readiness(readiness, container, target, started, changed))
    if liveness:
        loops.append(_liveness(liveness, container, target, restart, pod))
    await asyncio.gather(*loops)


async def _until_success(probe: Json, container: ContainerState, target: Target) -> bool:
    await asyncio.sleep(float(probe.get("initialDelaySeconds") or 0))
    failures = 0
    threshold = int(probe.get("failureThreshold") or 3)
    while True:
        if await probe_once(probe, container.spec, target):
            return True
        failures += 1
        if failures >= threshold:
            return False
        await asyncio.sleep(float(probe.get("periodSeconds") or 10))


async def _readiness(
    probe: Json,
    container: ContainerState,
    target: Target,
    started: asyncio.Event | None,
    changed: Callable[[], None],
) -> None:
    await asyncio.sleep(float(probe.get("initialDelaySeconds") or 0))
    successes = failures = 0
    while True:
        ok = await probe_once(probe, container.spec, target)
        successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
        if ok and not container.ready and successes >= int(probe.get("successThreshold") or 1):
            container.ready = True
            changed()
            if started:
                started.set()
        elif not ok and container.ready and failures >= int(probe.get("failureThreshold") or 3):
            container.ready = False
            changed()
        await asyncio.sleep(float(probe.get("periodSeconds") or 10))


async def _liveness(
    probe: Json,
    container: ContainerState,
    target: Target,
    restart: Callable[[], Awaitable[None]],
    pod: str,
) -> None:
    await asyncio.sleep(float(probe.get("initialDelaySeconds") or 0))
    failures = 0
    while True:
        failures = 0 if await probe_once(probe, container.spec, target) else failures + 1
        if failures >= int(probe.get("failureThreshold") or 3):
            log.info("liveness probe of %s/%s failed; restarting", pod, container.name)
            await restart()
            return
        await asyncio.sleep(float(probe.get("periodSeconds") or 10))
