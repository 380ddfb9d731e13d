"""The local node agent: a small kubelet stand-in that runs pods' containers as local processes.

It registers a Ready Node and keeps its heartbeat Lease, binds unscheduled pods to that node (no
scheduler runs in the local cluster), and runs each container's command+args as a process with
the container's environment and working directory.  It reports pod phase, container states,
exit codes and restarts by restartPolicy; runs init containers in order and keeps sidecars
(init containers with restartPolicy Always) running beside the main containers; runs readiness,
liveness and startup probes (httpGet, tcpSocket, exec); enforces activeDeadlineSeconds; and on
deletion sends SIGTERM, waits the grace period, SIGKILLs and finalizes the deletion.  It serves
the kubelet's containerLogs endpoint so that `kubectl logs` works.  The agent (this module)
keeps the node (its status: nodeinfo.py), binds and watches pods; podrunner.py runs one pod,
with containers.py, podenv.py (environment) and probes.py.  Volumes (emptyDir, configMap,
secret, downwardAPI, projected with the service-account token) are mounted at their paths in
a mount namespace per container (hack/volumes.py), so in-cluster clients work.  Like
a kubelet it runs at most `--max-pods` pods at once (110, the kubelet's default); a pod beyond
that stays Pending, unbound, until one ends.

Given the cluster's network (--network, hack/podnet.py), each pod gets a network namespace of
its own with an address on the node's bridge, reported as status.podIP, loopback, and the
cluster's DNS in its /etc/resolv.conf; `hostNetwork: true` pods share the node namespace.
Without it every pod shares the host's network, its IP is 127.0.0.1 and two pods must not
listen on the same port.

What it does not do, on purpose: images are ignored (a container must name its program in
`command` or `args`; programs resolve on the agent's PATH, which includes the project's virtual
environment); resources are not limited.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import ssl
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from lightkube import ALL_NS, ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType

import nodeinfo
import podnet
import volumes
from agentcommon import POD_IP, Json, now_iso, now_micro
from podrunner import PodRunner

log = logging.getLogger("nodeagent")

HEARTBEAT_SECONDS = 10
LEASE_SECONDS = 40


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
        self.network = podnet.load(Path(args.network).parent) if args.network else None
        self.pod_networks = (
            podnet.PodNetworks(self.network, self.state_dir / "ipam", self._runs_pod)
            if self.network
            else None
        )
        self.host_ip = self.network.host_ip if self.network else POD_IP
        self.can_mount = volumes.mounts_possible()
        # What containers run lives on this machine, not in an image: keep it visible.
        here = Path(__file__).resolve().parent.parent
        self.host_paths = tuple(
            str(p)
            for p in {here, Path(sys.prefix), Path(sys.base_prefix), self.state_dir.resolve()}
        )
        if not self.can_mount:
            log.warning("not root (or no mount namespaces): containers run without volume mounts")

    def _runs_pod(self, uid: str) -> bool:
        """Whether a pod of that uid still runs here (its network is in use)."""
        runner = self.runners.get(uid)
        return runner is not None and not runner.finished.is_set()

    @staticmethod
    def _server_address(kubeconfig: str) -> tuple[str, str]:
        server = KubeConfig.from_file(kubeconfig).get().cluster.server
        host, _, port = server.removeprefix("https://").partition(":")
        return host, port or "443"

    def base_env(self, pod: Json) -> dict[str, str]:
        if self.network:  # as a kubelet does: the `kubernetes` Service, through kube-proxy
            server = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
        else:
            server = {
                "KUBERNETES_SERVICE_HOST": self.server_host,
                "KUBERNETES_SERVICE_PORT": self.server_port,
            }
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOSTNAME": pod["metadata"]["name"],
            **server,
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
        if self.pod_networks and (swept := self.pod_networks.sweep()):
            log.info("removed %d pod network namespace(s) a previous agent left", swept)

    # node ------------------------------------------------------------------------------------

    def node_status(self) -> Json:
        return nodeinfo.node_status(
            max_pods=self.max_pods,
            kubelet_port=self.kubelet_port,
            started_at=self.started_at,
            address=self.host_ip,
        )

    async def register(self) -> None:
        self.started_at = now_iso()
        labels = {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": nodeinfo.ARCHITECTURE,
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

    async def remove_pod_dir(self, runner: PodRunner | None, path: Path) -> None:
        """As a kubelet does: a deleted pod's emptyDirs, copies of its Secrets and logs go,
        once its processes have ended (Argo copies its 110 MB executor into each pod's)."""
        if runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.finished.wait(), 60)
        await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)

    async def on_pod(self, event: str, pod: Json) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        if event == "DELETED":
            self.waiting.pop(uid, None)
            self.bound.discard(uid)
            runner = self.runners.pop(uid, None)
            if runner and not runner.terminating:
                await runner.kill_all(grace_seconds=0)
            gone = self.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{uid}"
            removing = asyncio.create_task(self.remove_pod_dir(runner, gone))
            self.chores.add(removing)
            removing.add_done_callback(self.chores.discard)
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
        await web.TCPSite(runner, self.host_ip, self.kubelet_port, ssl_context=context).start()

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
        "--network", help="the cluster's network.json (hack/podnet.py): pods get their own"
    )
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
