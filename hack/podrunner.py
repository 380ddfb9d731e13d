"""Runs one pod's containers as local processes, from admission to its end or deletion."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lightkube import ApiError
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

import podnet
import probes
import volumes
from agentcommon import POD_IP, Json, now_iso
from containers import (
    CONTAINER_MARKER,
    ContainerState,
    backoff_seconds,
    kill_marked,
    restart_wanted,
)
from podenv import ConfigError, Lookups, container_env, expand, field_value

if TYPE_CHECKING:
    from nodeagent import Agent

log = logging.getLogger("nodeagent")

STATUS_FLUSH_SECONDS = 0.2


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
        self.netns: str | None = None
        """The pod's network namespace (None: the host's network)."""
        self.ip = POD_IP
        self.own_netns = False
        self.dns_mounts: list[tuple[str, str, bool]] = []
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
            "hostIP": self.agent.host_ip,
            "hostIPs": [{"ip": self.agent.host_ip}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
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
            await self.detach_network()
            if self.phase in ("Succeeded", "Failed"):
                # As a kubelet does: a pod that has ended runs nothing more, so its volumes go
                # now, not when the pod object is deleted (Argo's each hold a 113 MB executor).
                await asyncio.to_thread(shutil.rmtree, self.dir / "volumes", ignore_errors=True)
            self.changed()
            self.finished.set()
            self.agent.room_made()

    # network ---------------------------------------------------------------------------------

    async def attach_network(self) -> None:
        """The pod's own network namespace and address (the node's for hostNetwork pods),
        with its resolv.conf and hosts file; a failure is retried like a missing volume."""
        agent, spec = self.agent, self.pod["spec"]
        if agent.network is None or agent.pod_networks is None:
            return
        host_network = bool(spec.get("hostNetwork"))
        while True:
            try:
                if host_network:
                    self.netns, self.ip = agent.network.node_netns, agent.network.node_ip
                else:
                    address = await asyncio.to_thread(agent.pod_networks.attach, self.uid)
                    self.netns, self.ip, self.own_netns = address.netns, address.ip, True
                break
            except RuntimeError as error:
                log.warning("%s/%s: network: %s", self.namespace, self.name, error)
                for container in self.init + self.main:
                    container.state = {
                        "waiting": {"reason": "ContainerCreating", "message": f"network: {error}"}
                    }
                self.changed()
                await asyncio.sleep(2)
        status = {**(self.pod.get("status") or {}), "podIP": self.ip, "hostIP": agent.host_ip}
        self.pod = {**self.pod, "status": status}
        self.dns_mounts = podnet.name_files(
            self.dir / "etc", spec, self.namespace, self.ip, self.name, host_network=host_network
        )

    async def detach_network(self) -> None:
        if self.own_netns and self.agent.pod_networks:
            await asyncio.to_thread(self.agent.pod_networks.detach, self.uid)
            self.own_netns = False

    def preexec(self, mounts: list[tuple[str, str, bool]]) -> Callable[[], None] | None:
        """What a container's process does before it runs: join the pod's network namespace,
        then its own mount namespace with its volumes (and the pod's resolv.conf and hosts)."""
        steps = []
        if self.netns:
            steps.append(podnet.entering(self.netns))
        mounts = self.dns_mounts + mounts if self.agent.can_mount else []
        if mounts:
            steps.append(volumes.entering(mounts, self.agent.host_paths))
        if not steps:
            return None

        def enter() -> None:
            for step in steps:
                step()

        return enter

    async def lifecycle(self) -> None:
        lookups = Lookups(self.agent.client, self.namespace)
        await self.attach_network()
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

    def termination_grace(self) -> float:
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

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
            try:
                mounts = volumes.mounts_for(container.spec, self.volumes)
            except volumes.VolumeError:
                mounts = []  # said when it starts, below
            program = volumes.program(argv[0], env.get("PATH"), mounts) if argv else None
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
                enter = self.preexec(volumes.mounts_for(container.spec, self.volumes))
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
            probing = asyncio.create_task(
                probes.run(
                    container,
                    probes.Target(env, cwd, self.ip, self.preexec([])),
                    started,
                    changed=self.changed,
                    restart=lambda: self.stop_process(container, self.termination_grace()),
                    pod=self.name,
                )
            )
            if self.phase == "Pending" and container in self.main:
                self.phase = "Running"
            self.changed()
            code = await container.process.wait()
            killed = kill_marked(marker)
            if killed:
                log.info("%s/%s: killed %d leftover process(es)", self.name, container.name, killed)
            probing.cancel()
            await asyncio.gather(probing, return_exceptions=True)
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
