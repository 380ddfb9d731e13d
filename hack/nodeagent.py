"""The local node agent: a small kubelet stand-in that runs pods' containers as local processes.

It registers a Ready Node and keeps its heartbeat Lease, binds unscheduled pods to that node (no
scheduler runs in the local cluster), and runs each container's command+args as a process with
the container's environment and working directory.  It reports pod phase, container states,
exit codes and restarts by restartPolicy; runs init containers in order and keeps sidecars
(init containers with restartPolicy Always) running beside the main containers; runs readiness,
liveness and startup probes (httpGet, tcpSocket, exec); enforces activeDeadlineSeconds; and on
deletion sends SIGTERM, waits the grace period, SIGKILLs and finalizes the deletion.  It serves
the kubelet's containerLogs endpoint so that `kubectl logs` works.  Volumes (emptyDir,
configMap, secret, downwardAPI, projected with the service-account token) are mounted at their
paths in a mount namespace per container (hack/volumes.py), so in-cluster clients work.  Like
a kubelet it runs at most `--max-pods` pods at once (110, the kubelet's default); a pod beyond
that stays Pending, unbound, until one ends.

What it does not do, on purpose: images are ignored (a container must name its program in
`command` or `args`; programs resolve on the agent's PATH, which includes the project's virtual
environment); every pod shares the host's network (like hostNetwork), so its IP is 127.0.0.1
and two pods must not listen on the same port; resources are not limited.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from lightkube import ALL_NS, ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import ConfigMap, Node, Pod, Secret
from lightkube.types import PatchType

import volumes

log = logging.getLogger("nodeagent")

KUBERNETES_VERSION = "v1.36.3"
POD_IP = "127.0.0.1"
HEARTBEAT_SECONDS = 10
LEASE_SECONDS = 40
STATUS_FLUSH_SECONDS = 0.2

Json = dict[str, Any]


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- environment ----------------------------------------------------------------------------

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$ escapes, unknown stay."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(replace, text)


class ConfigError(Exception):
    """The container's configuration refers to something missing (CreateContainerConfigError)."""


@dataclass
class Lookups:
    client: AsyncClient
    namespace: str
    _cache: dict[tuple[str, str], Json] = field(default_factory=dict)

    async def _get(self, kind: str, name: str) -> Json | None:
        key = (kind, name)
        if key not in self._cache:
            resource = Secret if kind == "Secret" else ConfigMap
            try:
                obj = await self.client.get(resource, name, namespace=self.namespace)
            except ApiError as error:
                if error.status.code == 404:
                    return None
                raise
            self._cache[key] = obj.to_dict()
        return self._cache[key]

    async def value(self, kind: str, ref: Json) -> str | None:
        obj = await self._get(kind, ref["name"])
        optional = bool(ref.get("optional", False))
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
        if kind == "Secret":
            import base64

            data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            data.update(obj.get("stringData") or {})
        else:
            data = dict(obj.get("data") or {})
        if ref["key"] not in data:
            if optional:
                return None
            raise ConfigError(
                f"couldn't find key {ref['key']} in {kind} {self.namespace}/{ref['name']}"
            )
        return str(data[ref["key"]])

    async def all_of(self, kind: str, ref: Json) -> dict[str, str]:
        obj = await self._get(kind, ref["name"])
        if obj is None:
            if ref.get("optional"):
                return {}
            raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
        if kind == "Secret":
            import base64

            return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})


def field_value(pod: Json, path: str) -> str:
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.podIP": POD_IP,
        "status.hostIP": POD_IP,
        "status.podIPs": POD_IP,
    }
    if path in simple:
        return str(simple[path] or "")
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError(f"unsupported fieldRef {path}")


async def container_env(
    pod: Json, container: Json, lookups: Lookups, base: dict[str, str]
) -> dict[str, str]:
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            values = await lookups.all_of("ConfigMap", source["configMapRef"])
        else:
            values = await lookups.all_of("Secret", source["secretRef"])
        env.update({prefix + k: v for k, v in values.items()})
    for var in container.get("env") or []:
        value: str | None
        if "valueFrom" not in var or var["valueFrom"] is None:
            value = expand(var.get("value") or "", env)
        else:
            source = var["valueFrom"]
            if source.get("secretKeyRef"):
                value = await lookups.value("Secret", source["secretKeyRef"])
            elif source.get("configMapKeyRef"):
                value = await lookups.value("ConfigMap", source["configMapKeyRef"])
            elif source.get("fieldRef"):
                value = field_value(pod, source["fieldRef"]["fieldPath"])
            elif source.get("resourceFieldRef"):
                value = "0"
            else:
                raise ConfigError(f"unsupported valueFrom for {var['name']}")
        if value is not None:
            env[var["name"]] = value
    return env


# --- probes -------------------------------------------------------------------------------


def _port(container: Json, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"unknown named port {port}")


async def probe_once(probe: Json, container: Json, env: dict[str, str], cwd: str) -> bool:
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if probe.get("httpGet"):
            spec = probe["httpGet"]
            scheme = (spec.get("scheme") or "HTTP").lower()
            url = f"{scheme}://127.0.0.1:{_port(container, spec['port'])}{spec.get('path') or '/'}"
            headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.get(url, headers=headers, ssl=False) as response,
            ):
                return 200 <= response.status < 400
        if probe.get("tcpSocket"):
            port = _port(container, probe["tcpSocket"]["port"])
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
            writer.close()
            return True
        if probe.get("exec"):
            process = await asyncio.create_subprocess_exec(
                *probe["exec"]["command"],
                env=env,
                cwd=cwd,
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


# --- containers ---------------------------------------------------------------------------


@dataclass
class ContainerState:
    """What the agent knows of one container; rendered into status.containerStatuses."""

    spec: Json
    restart_count: int = 0
    state: Json = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Json = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    process: asyncio.subprocess.Process | None = None
    exit_code: int | None = None
    done: bool = False  # terminated and will not be restarted

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def render(self, pod_uid: str) -> Json:
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": f"treadle://{pod_uid}/{self.name}/{self.restart_count}",
            "restartCount": self.restart_count,
            "ready": self.ready,
            "started": self.started,
            "state": self.state,
            "lastState": self.last_state,
        }


CONTAINER_MARKER = "TREADLE_LOCAL_CONTAINER"


def kill_marked(marker: str) -> int:
    """SIGKILLs every process whose environment carries `marker`; returns how many."""
    needle = f"{CONTAINER_MARKER}={marker}".encode()
    killed = 0
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                os.kill(int(environ.parent.name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return killed


def restart_wanted(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def backoff_seconds(restart_count: int, base: float, cap: float) -> float:
    return float(min(cap, base * (2 ** max(0, restart_count - 1))))


class PodRunner:
    """Runs one pod from admission to its terminal phase or deletion."""

    def __init__(self, agent: Agent, pod: Json) -> None:
        self.agent = agent
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        spec = pod["spec"]
        self.policy: str = spec.get("restartPolicy") or "Always"
        self.init = [ContainerState(c) for c in spec.get("initContainers") or []]
        self.main = [ContainerState(c) for c in spec.get("containers") or []]
        self.dir = agent.state_dir / "pods" / f"{self.namespace}_{self.name}_{self.uid}"
        self.phase = "Pending"
        self.reason: str | None = None
        self.message: str | None = None
        self.initialized = False
        self.start_time = now_iso()
        self.terminating = False
        self.terminator: asyncio.Task[None] | None = None
        self.dirty = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.flusher: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()
        self.sidecar_tasks: list[asyncio.Task[None]] = []
        self.volumes: dict[str, Path] = {}
        previous = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        for container in self.main:
            if container.name in previous:
                container.restart_count = int(previous[container.name].get("restartCount", 0)) + 1

    # status ----------------------------------------------------------------------------------

    def changed(self) -> None:
        self.dirty.set()

    def render_status(self) -> Json:
        ready = (
            self.phase == "Running"
            and all(c.ready for c in self.main)
            and all(c.ready for c in self.init if c.spec.get("restartPolicy") == "Always")
        )
        containers_ready = all(c.ready for c in self.main)

        def condition(kind: str, status: bool, reason: str | None = None) -> Json:
            entry: Json = {
                "type": kind,
                "status": "True" if status else "False",
                "lastProbeTime": None,
            }
            entry["lastTransitionTime"] = now_iso()
            if reason and not status:
                entry["reason"] = reason
            return entry

        status: Json = {
            "phase": self.phase,
            "hostIP": POD_IP,
            "hostIPs": [{"ip": POD_IP}],
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "startTime": self.start_time,
            "conditions": [
                condition("PodScheduled", True),
                condition("Initialized", self.initialized, "ContainersNotInitialized"),
                condition("ContainersReady", containers_ready, "ContainersNotReady"),
                condition("Ready", ready, "ContainersNotReady"),
            ],
            "initContainerStatuses": [c.render(self.uid) for c in self.init],
            "containerStatuses": [c.render(self.uid) for c in self.main],
            "reason": self.reason,
            "message": self.message,
        }
        return status

    async def flush_status(self) -> None:
        await self.agent.client.patch(
            Pod.Status,
            self.name,
            {"status": self.render_status()},
            namespace=self.namespace,
            patch_type=PatchType.MERGE,
        )

    async def status_loop(self) -> None:
        """Writes status whenever it changed, at most every STATUS_FLUSH_SECONDS."""
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            try:
                await self.flush_status()
            except ApiError as error:
                if error.status.code == 404:
                    return
                log.warning("status of %s/%s: %s", self.namespace, self.name, error)
                self.dirty.set()
            except Exception as error:  # API server restarting: retry
                log.warning("status of %s/%s: %r", self.namespace, self.name, error)
                self.dirty.set()
                await asyncio.sleep(1)
            await asyncio.sleep(STATUS_FLUSH_SECONDS)

    # life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.flusher = asyncio.create_task(self.status_loop(), name=f"status:{self.name}")
        self.task = asyncio.create_task(self.run(), name=f"pod:{self.name}")

    async def run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.changed()
        try:
            deadline = self.pod["spec"].get("activeDeadlineSeconds")
            if deadline:
                await asyncio.wait_for(self.lifecycle(), float(deadline))
            else:
                await self.lifecycle()
        except TimeoutError:
            await self.kill_all(grace_seconds=0)
            self.phase, self.reason = "Failed", "DeadlineExceeded"
            self.message = "Pod was active on the node longer than the specified deadline"
            for container in self.main + self.init:
                container.ready = False
        except asyncio.CancelledError:
            await self.kill_all(grace_seconds=0)
            raise
        finally:
            self.changed()
            self.finished.set()
            self.agent.room_made()

    async def lifecycle(self) -> None:
        lookups = Lookups(self.agent.client, self.namespace)
        while True:
            try:
                self.volumes = await volumes.prepare(
                    self.agent.client, self.pod, lookups, self.dir, field_value
                )
                break
            except Exception as error:  # a missing object, or the API server away: try again
                log.warning("%s/%s: volumes: %s", self.namespace, self.name, error)
                for container in self.init + self.main:
                    container.state = {
                        "waiting": {"reason": "ContainerCreating", "message": f"volumes: {error}"}
                    }
                self.changed()
                lookups._cache.clear()
                await asyncio.sleep(2)
        for container in self.init:
            if container.spec.get("restartPolicy") == "Always":
                started = asyncio.Event()
                self.sidecar_tasks.append(
                    asyncio.create_task(self.keep_running(container, lookups, "Always", started))
                )
                await started.wait()
                continue
            await self.keep_running(
                container, lookups, "Never" if self.policy == "Never" else "OnFailure", None
            )
            if container.exit_code != 0:
                self.phase = "Failed"
                self.reason = "InitContainerFailed"
                await self.stop_sidecars()
                return
        self.initialized = True
        self.changed()
        await asyncio.gather(*(self.keep_running(c, lookups, self.policy, None) for c in self.main))
        await self.stop_sidecars()
        if not self.terminating:
            failed = any(c.exit_code != 0 for c in self.main)
            self.phase = "Failed" if failed else "Succeeded"

    async def stop_sidecars(self) -> None:
        sidecars = [c for c in self.init if c.spec.get("restartPolicy") == "Always"]
        for container in sidecars:
            container.done = True
            await self.stop_process(container, self.grace_seconds())
        for task in self.sidecar_tasks:
            task.cancel()
        await asyncio.gather(*self.sidecar_tasks, return_exceptions=True)

    def grace_seconds(self) -> float:
        meta_grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if meta_grace is not None:
            return float(meta_grace)
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    async def keep_running(
        self,
        container: ContainerState,
        lookups: Lookups,
        policy: str,
        started: asyncio.Event | None,
    ) -> None:
        """Runs a container, restarting it by policy, until it is done or the pod terminates."""
        while not self.terminating:
            try:
                env = await container_env(
                    self.pod, container.spec, lookups, self.agent.base_env(self.pod)
                )
            except ConfigError as error:
                container.state = {
                    "waiting": {"reason": "CreateContainerConfigError", "message": str(error)}
                }
                self.changed()
                lookups._cache.clear()
                await asyncio.sleep(2)
                continue
            argv = [
                expand(a, env)
                for a in (container.spec.get("command") or []) + (container.spec.get("args") or [])
            ]
            # Every process the container starts inherits this marker, even in a new session,
            # so the container's end can take them all down, as a real runtime's does.
            marker = f"{self.uid}/{container.name}/{container.restart_count}"
            env = {**env, CONTAINER_MARKER: marker}
            program = shutil.which(argv[0], path=env.get("PATH")) if argv else None
            if program is None:
                container.state = {
                    "waiting": {
                        "reason": "CreateContainerError",
                        "message": f"executable {argv[0] if argv else '(none)'!r} not found (the "
                        "local node agent ignores images; name the program in command or args)",
                    }
                }
                container.done, container.exit_code = True, 128
                self.changed()
                if started:
                    started.set()
                return
            cwd = container.spec.get("workingDir") or str(self.dir)
            Path(cwd).mkdir(parents=True, exist_ok=True)
            logdir = self.dir / container.name
            logdir.mkdir(parents=True, exist_ok=True)
            try:
                mounts = volumes.mounts_for(container.spec, self.volumes)
                enter = None
                if mounts and self.agent.can_mount:
                    enter = volumes.entering(mounts, self.agent.host_paths)
                with open(logdir / f"{container.restart_count}.log", "ab") as logfile:
                    container.process = await asyncio.create_subprocess_exec(
                        program,
                        *argv[1:],
                        env=env,
                        cwd=cwd,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=logfile,
                        stderr=asyncio.subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=enter,
                    )
            except (OSError, subprocess.SubprocessError, volumes.VolumeError) as error:
                log.warning("%s/%s: cannot start: %s", self.name, container.name, error)
                container.state = {
                    "waiting": {"reason": "CreateContainerError", "message": str(error)}
                }
                self.changed()
                await asyncio.sleep(2)
                continue
            self.agent.remember_process(self.uid, container.name, container.process.pid)
            started_at = now_iso()
            container.state = {"running": {"startedAt": started_at}}
            container.exit_code = None
            probes = asyncio.create_task(self.run_probes(container, env, cwd, started))
            if self.phase == "Pending" and container in self.main:
                self.phase = "Running"
            self.changed()
            code = await container.process.wait()
            killed = kill_marked(marker)
            if killed:
                log.info("%s/%s: killed %d leftover process(es)", self.name, container.name, killed)
            probes.cancel()
            await asyncio.gather(probes, return_exceptions=True)
            self.agent.forget_process(self.uid, container.name)
            exit_code = 128 + (-code) if code < 0 else code
            container.exit_code = exit_code
            container.ready = False
            container.started = False
            terminated = {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": started_at,
                "finishedAt": now_iso(),
                "containerID": f"treadle://{self.uid}/{container.name}/{container.restart_count}",
            }
            if code < 0:
                terminated["signal"] = -code
            container.state = {"terminated": terminated}
            if self.terminating or container.done or not restart_wanted(policy, exit_code):
                container.done = True
                self.changed()
                return
            container.last_state = {"terminated": terminated}
            container.restart_count += 1
            delay = backoff_seconds(
                container.restart_count, self.agent.backoff_base, self.agent.backoff_cap
            )
            container.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay:g}s restarting failed "
                    f"container={container.name} pod={self.name}",
                }
            }
            self.changed()
            await asyncio.sleep(delay)

    async def run_probes(
        self,
        container: ContainerState,
        env: dict[str, str],
        cwd: str,
        started: asyncio.Event | None,
    ) -> None:
        spec = container.spec
        startup, readiness, liveness = (
            spec.get("startupProbe"),
            spec.get("readinessProbe"),
            spec.get("livenessProbe"),
        )
        if startup and not await self.probe_until(startup, container, env, cwd):
            await self.stop_process(container, 1)
            return
        container.started = True
        if readiness is None:
            container.ready = True
        self.changed()
        if started and readiness is None:
            started.set()
        loops = []
        if readiness:
            loops.append(self.readiness_loop(readiness, container, env, cwd, started))
        if liveness:
            loops.append(self.liveness_loop(liveness, container, env, cwd))
        await asyncio.gather(*loops)

    async def probe_until(
        self,
        probe: Json,
        container: ContainerState,
        env: dict[str, str],
        cwd: str,
        *,
        want_success: bool,
    ) -> bool:
        await asyncio.sleep(float(probe.get("initialDelaySeconds") or 0))
        failures = 0
        threshold = int(probe.get("failureThreshold") or 3)
        while True:
            if await probe_once(probe, container.spec, env, cwd):
                return True
            failures += 1
            if failures >= threshold:
                return False
            await asyncio.sleep(float(probe.get("periodSeconds") or 10))

    async def readiness_loop(
        self,
        probe: Json,
        container: ContainerState,
        env: dict[str, str],
        cwd: str,
        started: asyncio.Event | None,
    ) -> None:
        await asyncio.sleep(float(probe.get("initialDelaySeconds") or 0))
        successes = failures = 0
        while True:
            ok = await probe_once(probe, container.spec, env, cwd)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if ok and not container.ready and successes >= int(probe.get("successThreshold") or 1):
                container.ready = True
                self.changed()
                if started:
                    started.set()
            elif not ok and container.ready and failures >= int(probe.get("failureThreshold") or 3):
                container.ready = False
                self.changed()
            await asyncio.sleep(float(probe.get("periodSeconds") or 10))

    async def liveness_loop(
        self, probe: Json, container: ContainerState, env: dict[str, str], cwd: str
    ) -> None:
        await asyncio.sleep(float(probe.get("initialDelaySeconds") or 0))
        failures = 0
        while True:
            failures = 0 if await probe_once(probe, container.spec, env, cwd) else failures + 1
            if failures >= int(probe.get("failureThreshold") or 3):
                log.info("liveness probe of %s/%s failed; restarting", self.name, container.name)
                await self.stop_process(
                    container, float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
                )
                return
            await asyncio.sleep(float(probe.get("periodSeconds") or 10))

    async def stop_process(self, container: ContainerState, grace_seconds: float) -> None:
        process = container.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), grace_seconds)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        # Whatever the container started in its session goes with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    async def kill_all(self, grace_seconds: float) -> None:
        self.terminating = True
        containers = self.main + self.init
        await asyncio.gather(*(self.stop_process(c, grace_seconds) for c in containers))

    async def terminate(self) -> None:
        """Graceful deletion: SIGTERM, the grace period, SIGKILL; then the pod object goes."""
        if self.terminating:
            return
        grace = self.grace_seconds()
        log.info("terminating %s/%s (grace %gs)", self.namespace, self.name, grace)
        self.terminating = True
        await asyncio.gather(*(self.stop_process(c, grace) for c in self.main))
        await asyncio.gather(*(self.stop_process(c, grace) for c in reversed(self.init)))
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.phase not in ("Succeeded", "Failed"):
            failed = any(c.exit_code not in (0, None) for c in self.main)
            self.phase = "Failed" if failed else "Succeeded"
        for container in self.main + self.init:
            container.ready = False
        with contextlib.suppress(Exception):
            await self.flush_status()
        if self.flusher:
            self.flusher.cancel()
        await self.agent.finalize(self.namespace, self.name)


# --- the agent ----------------------------------------------------------------------------


class Agent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.node_name: str = args.node_name
        self.state_dir = Path(args.state_dir)
        self.kubeconfig = args.kubeconfig
        self.kubelet_port: int = args.kubelet_port
        self.backoff_base: float = args.restart_backoff_seconds
        self.backoff_cap: float = args.restart_backoff_max_seconds
        self.max_pods: int = args.max_pods
        self.bound: set[str] = set()
        """Pods bound here whose runner has not started yet."""
        self.waiting: dict[str, Json] = {}
        """Pods left unbound while the node is full, by uid."""
        self.tls = (args.tls_cert, args.tls_key, args.client_ca)
        self.client = AsyncClient(
            config=KubeConfig.from_file(args.kubeconfig), field_manager="treadle-node-agent"
        )
        self.runners: dict[str, PodRunner] = {}
        self.chores: set[asyncio.Task[None]] = set()
        """Bindings and finalizations under way: the pod watch does not wait for them."""
        self.server_host, self.server_port = self._server_address(args.kubeconfig)
        self.can_mount = volumes.mounts_possible()
        # What containers run lives on this machine, not in an image: keep it visible.
        here = Path(__file__).resolve().parent.parent
        self.host_paths = tuple(
            str(p)
            for p in {here, Path(sys.prefix), Path(sys.base_prefix), self.state_dir.resolve()}
        )
        if not self.can_mount:
            log.warning("not root (or no mount namespaces): containers run without volume mounts")

    @staticmethod
    def _server_address(kubeconfig: str) -> tuple[str, str]:
        server = KubeConfig.from_file(kubeconfig).get().cluster.server
        host, _, port = server.removeprefix("https://").partition(":")
        return host, port or "443"

    def base_env(self, pod: Json) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOSTNAME": pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": self.server_host,
            "KUBERNETES_SERVICE_PORT": self.server_port,
        }

    # processes survive an agent crash: remember them so that a restarted agent can clean up.
    def _pid_path(self, uid: str, container: str) -> Path:
        return self.state_dir / "pids" / f"{uid}_{container}.pid"

    def remember_process(self, uid: str, container: str, pid: int) -> None:
        path = self._pid_path(uid, container)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(pid))

    def forget_process(self, uid: str, container: str) -> None:
        self._pid_path(uid, container).unlink(missing_ok=True)

    def kill_leftovers(self) -> None:
        for path in (self.state_dir / "pids").glob("*.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.killpg(int(path.read_text()), signal.SIGKILL)
                log.info("killed leftover process group %s from a previous agent", path.read_text())
            path.unlink(missing_ok=True)

    # node ------------------------------------------------------------------------------------

    def node_status(self) -> Json:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{memory // 1024}Ki",
            "pods": str(self.max_pods),
        }
        heartbeat = now_iso()

        def condition(kind: str, status: str, reason: str, message: str) -> Json:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": heartbeat,
                "lastTransitionTime": self.started_at,
            }

        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "enough memory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "enough PIDs"),
                condition(
                    "Ready", "True", "KubeletReady", "treadle node agent is posting ready status"
                ),
            ],
            "addresses": [
                {"type": "InternalIP", "address": POD_IP},
                {"type": "Hostname", "address": socket.gethostname()},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "treadle local node",
                "containerRuntimeVersion": "treadle-node-agent://0.1.0",
                "kubeletVersion": KUBERNETES_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                    platform.machine(), platform.machine()
                ),
            },
        }

    async def register(self) -> None:
        self.started_at = now_iso()
        labels = {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": self.node_status()["nodeInfo"]["architecture"],
            "treadle.dev/local-node": "true",
        }
        node = Node(metadata=ObjectMeta(name=self.node_name, labels=labels))
        try:
            await self.client.create(node)
            log.info("registered node %s", self.node_name)
        except ApiError as error:
            if error.status.code != 409:
                raise
        await self.post_node_status()

    async def post_node_status(self) -> None:
        await self.client.patch(
            Node.Status, self.node_name, {"status": self.node_status()}, patch_type=PatchType.MERGE
        )

    async def renew_lease(self) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": now_micro(),
            },
        }
        await self.client.patch(
            Lease,
            self.node_name,
            body,
            namespace="kube-node-lease",
            patch_type=PatchType.APPLY,
            force=True,
        )

    async def heartbeat(self) -> None:
        while True:
            try:
                await self.renew_lease()
                await self.post_node_status()
            except Exception as error:  # keep beating through API-server restarts
                log.warning("heartbeat failed: %r", error)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    # pods ------------------------------------------------------------------------------------

    def pods_here(self) -> int:
        """Pods that count against --max-pods: bound and not finished."""
        running = sum(1 for r in self.runners.values() if not r.finished.is_set())
        return running + len(self.bound)

    def admit(self, pod: Json) -> None:
        """Binds the pod here, or, like a full node, leaves it Pending until a pod ends."""
        uid = pod["metadata"]["uid"]
        if self.pods_here() >= self.max_pods:
            self.waiting[uid] = pod
            return
        self.waiting.pop(uid, None)
        self.bound.add(uid)
        self.soon(self.bind(pod))

    def soon(self, chore: Coroutine[Any, Any, None]) -> None:
        """Runs an API call beside the pod watch, so a burst of new pods is bound at once."""
        task = asyncio.get_running_loop().create_task(chore)
        self.chores.add(task)
        task.add_done_callback(self.chores.discard)

    def room_made(self) -> None:
        for uid, pod in list(self.waiting.items()):
            if self.pods_here() >= self.max_pods:
                return
            del self.waiting[uid]
            self.bound.add(uid)
            self.soon(self.bind(pod))

    async def bind(self, pod: Json) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            await self.client.create(
                Pod.Binding.from_dict(binding), meta["name"], namespace=meta["namespace"]
            )
        except ApiError as error:
            if error.status.code != 409:  # not bound here: it no longer counts
                self.bound.discard(meta["uid"])
            if error.status.code not in (404, 409):
                log.warning("binding %s/%s: %s", meta["namespace"], meta["name"], error)
        except msgspec.ValidationError:
            # The API server answers a Binding with a Status, which lightkube cannot decode
            # as a Binding: the bind itself succeeded.
            pass

    async def finalize(self, namespace: str, name: str) -> None:
        self.runners_by_name_done(namespace, name)
        with contextlib.suppress(ApiError):
            await self.client.delete(Pod, name, namespace=namespace, grace_period=0)

    def runners_by_name_done(self, namespace: str, name: str) -> None:
        for uid, runner in list(self.runners.items()):
            if runner.namespace == namespace and runner.name == name and runner.terminating:
                self.runners.pop(uid, None)

    async def on_pod(self, event: str, pod: Json) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        if event == "DELETED":
            self.waiting.pop(uid, None)
            self.bound.discard(uid)
            runner = self.runners.pop(uid, None)
            if runner and not runner.terminating:
                await runner.kill_all(grace_seconds=0)
            return
        if not spec.get("nodeName"):
            if spec.get(
                "schedulerName", "default-scheduler"
            ) == "default-scheduler" and not meta.get("deletionTimestamp"):
                self.admit(pod)
            return
        if spec["nodeName"] != self.node_name:
            return
        runner = self.runners.get(uid)
        if meta.get("deletionTimestamp"):
            if runner is None:
                self.soon(self.finalize(meta["namespace"], meta["name"]))
            elif not runner.terminating:
                runner.pod = pod
                runner.terminator = asyncio.create_task(
                    runner.terminate(), name=f"terminate:{meta['name']}"
                )
            return
        if runner is None:
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                return
            runner = PodRunner(self, pod)
            self.runners[uid] = runner
            self.bound.discard(uid)
            log.info("starting pod %s/%s", meta["namespace"], meta["name"])
            runner.start()

    async def watch_pods(self) -> None:
        while True:
            try:
                async for event, pod in self.client.watch(Pod, namespace=ALL_NS, server_timeout=60):
                    try:
                        await self.on_pod(event, pod.to_dict())
                    except Exception:
                        log.exception("handling pod %s", pod.metadata.name if pod.metadata else "?")
            except Exception as error:
                log.warning("pod watch ended: %r; restarting", error)
                await asyncio.sleep(1)

    # kubelet API: just enough for `kubectl logs` -----------------------------------------------

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        namespace, name, container = (
            request.match_info[k] for k in ("namespace", "pod", "container")
        )
        candidates = sorted(
            (self.state_dir / "pods").glob(f"{namespace}_{name}_*"), key=lambda p: p.stat().st_mtime
        )
        if not candidates:
            raise web.HTTPNotFound(text=f"pod {namespace}/{name} has no logs on this node")
        logdir = candidates[-1] / container
        files = sorted(logdir.glob("*.log"), key=lambda p: int(p.stem))
        if not files:
            raise web.HTTPNotFound(text=f"container {container} has no logs")
        previous = request.query.get("previous") in ("true", "1")
        if previous and len(files) < 2:
            raise web.HTTPBadRequest(text=f'previous terminated container "{container}" not found')
        path = files[-2] if previous else files[-1]
        data = path.read_bytes()
        tail = request.query.get("tailLines")
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail) :]) if int(tail) > 0 else b""
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(data)
        if request.query.get("follow") in ("true", "1") and not previous:
            offset = path.stat().st_size
            while True:
                await asyncio.sleep(0.5)
                size = path.stat().st_size
                if size > offset:
                    with path.open("rb") as handle:
                        handle.seek(offset)
                        await response.write(handle.read(size - offset))
                    offset = size
                runner = next(
                    (
                        r
                        for r in self.runners.values()
                        if r.name == name and r.namespace == namespace
                    ),
                    None,
                )
                if runner is None or runner.finished.is_set():
                    break
        await response.write_eof()
        return response

    async def serve_kubelet_api(self) -> None:
        cert, key, ca = self.tls
        if not (cert and key and self.kubelet_port):
            return
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
        context.load_cert_chain(cert, key)
        context.verify_mode = ssl.CERT_REQUIRED
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        app.router.add_get("/healthz", lambda _: _ok())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.kubelet_port, ssl_context=context).start()

    async def run(self) -> None:
        self.kill_leftovers()
        await self.register()
        await self.renew_lease()
        await self.serve_kubelet_api()
        await asyncio.gather(self.heartbeat(), self.watch_pods())

    async def shutdown(self) -> None:
        """Agent stop: containers are stopped (like a node that shuts down), pods stay."""
        await asyncio.gather(
            *(r.kill_all(grace_seconds=5) for r in self.runners.values()), return_exceptions=True
        )


async def _ok() -> web.Response:
    return web.Response(text="ok")


async def amain(args: argparse.Namespace) -> None:
    agent = Agent(args)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main_task.cancel)
    try:
        await agent.run()
    except asyncio.CancelledError:
        log.info("stopping: terminating containers")
        await agent.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Treadle's local node agent")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", default="treadle-local")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--kubelet-port", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca")
    parser.add_argument(
        "--restart-backoff-seconds",
        type=float,
        default=1.0,
        help="first crash-loop back-off (the kubelet uses 10 s; shorter here for fast local loops)",
    )
    parser.add_argument("--restart-backoff-max-seconds", type=float, default=30.0)
    parser.add_argument(
        "--max-pods",
        type=int,
        default=110,
        help="pods the node runs at once (the kubelet's default); more wait Pending",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
