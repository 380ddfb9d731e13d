"""The local cluster: etcd, kube-apiserver, kube-controller-manager, the node agent, kube-proxy
and CoreDNS as local processes, with generated certificates.  No Docker engine is needed.

Pods get a network of their own (hack/podnet.py: a node network namespace with a bridge, a
namespace and an address per pod), so the API server listens on the cluster's host address
(local to this machine) and the kubeconfig names it; kube-proxy and CoreDNS run in the node
namespace.  Where that network cannot be made (not root), every pod shares the host's network,
the API server listens on 127.0.0.1 and neither kube-proxy nor CoreDNS runs.

    hack/cluster up       start what is not running (idempotent), write .treadle/kubeconfig
    hack/cluster down     stop every process of the cluster (data is kept)
    hack/cluster status   print what runs, and the kubeconfig path
    hack/cluster purge    down, then delete the state directory (certificates, etcd data, logs)

State lives in $TREADLE_STATE_DIR (default: .treadle in the checkout); binaries come from
hack/tools.sh's cache.  Ports are chosen free on first start and kept in ports.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import clusterdns
import podnet
from clusterpki import FRONT_PROXY_CLIENT, NODE_NAME, Pki, log, write_kubeconfig
from podnet import SERVICE_CIDR

REPO = Path(__file__).resolve().parent.parent
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "node-agent")
NETWORKED = ("kube-proxy", "coredns")
START_TIMEOUT_SECONDS = 90


def state_dir() -> Path:
    return Path(os.environ.get("TREADLE_STATE_DIR", REPO / ".treadle")).resolve()


def tools_bin() -> Path:
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "tools.sh"), "--print"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


PORT_NAMES = ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "kubelet")


def components(state: Path) -> tuple[str, ...]:
    """What this cluster runs: kube-proxy and CoreDNS only where pods have their own network."""
    return CONTROL_PLANE + (NETWORKED if podnet.load(state) else ())


def ports(state: Path, *, choose: bool) -> dict[str, int]:
    path = state / "ports.json"
    known: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
    if choose:
        for name in PORT_NAMES:
            if name not in known or not _port_free(known[name]):
                known[name] = _free_port()
        path.write_text(json.dumps(known, indent=2))
    return known


def _pid_file(state: Path, component: str) -> Path:
    return state / "run" / f"{component}.pid"


def running_pid(state: Path, component: str) -> int | None:
    """The pid of a component if it is alive and still the process we started."""
    path = _pid_file(state, component)
    if not path.exists():
        return None
    pid, _, marker = path.read_text().partition("\n")
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    if marker.strip() and marker.strip() not in cmdline:
        return None
    stat = Path(f"/proc/{int(pid)}/stat").read_text()
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return None
    return int(pid)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _start(
    state: Path,
    component: str,
    argv: list[str],
    env: dict[str, str] | None = None,
    netns: str | None = None,
) -> subprocess.Popen[bytes]:
    """Starts a component in its own session (in the network namespace `netns` if given)."""
    (state / "run").mkdir(parents=True, exist_ok=True)
    (state / "logs").mkdir(parents=True, exist_ok=True)
    logfile = open(state / "logs" / f"{component}.log", "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
        cwd=state,
        preexec_fn=podnet.entering(netns) if netns else None,
    )
    logfile.close()
    _pid_file(state, component).write_text(f"{process.pid}\n{Path(argv[0]).name}\n")
    return process


def stop_component(state: Path, component: str, timeout_seconds: float = 15) -> bool:
    pid = running_pid(state, component)
    if pid is None:
        _pid_file(state, component).unlink(missing_ok=True)
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + (timeout_seconds if sig == signal.SIGTERM else 5)
        while time.monotonic() < deadline and running_pid(state, component) == pid:
            time.sleep(0.1)
        if running_pid(state, component) != pid:
            break
    _pid_file(state, component).unlink(missing_ok=True)
    return True


# --- the API server -------------------------------------------------------------------------


def _ssl_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.path("ca.crt")))
    context.load_cert_chain(str(pki.path("admin.crt")), str(pki.path("admin.key")))
    return context


def _get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=3) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        return 0, str(error)


def _wait(
    what: str,
    check: object,
    state: Path,
    component: str,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Polls `check` until it holds; fails at once if the component's process exited."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    assert callable(check)
    while time.monotonic() < deadline:
        if check():
            return
        exited = process.poll() is not None if process else running_pid(state, component) is None
        if exited:
            code = process.returncode if process else "?"
            tail = (state / "logs" / f"{component}.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"{component} exited ({code}) while starting; end of its log:\n{tail}")
        time.sleep(0.2)
    raise SystemExit(f"{what} did not become ready in {START_TIMEOUT_SECONDS} s")


def up() -> None:
    started = time.monotonic()
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    apiserver = running_pid(state, "kube-apiserver")
    if apiserver and b"--requestheader-client-ca-file" not in _cmdline(apiserver):
        log("restarting kube-apiserver: it was started before it forwarded to aggregated APIs")
        stop_component(state, "kube-apiserver")
    if all(running_pid(state, c) for c in components(state)):
        log(f"already running; kubeconfig: {state / 'kubeconfig'}")
        return
    binaries = tools_bin()
    missing = [
        b
        for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy", "coredns")
        if not (binaries / b).exists()
    ]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)} in {binaries}: run hack/tools.sh first")
    why_not = podnet.unavailable()
    network = podnet.ensure(state) if why_not is None else None
    if network:
        log(f"pod network {network.pod_cidr} (node namespace {network.node_netns})")
    else:
        log(f"pods share the host's network: {why_not}")
    host = network.host_ip if network else "127.0.0.1"
    pki = Pki(state / "pki")
    pki.ensure((network.host_ip,) if network else ())
    chosen = ports(state, choose=not any(running_pid(state, c) for c in components(state)))
    kubeconfig = write_kubeconfig(state, pki, chosen["apiserver"], host)
    context = _ssl_context(pki)

    if not running_pid(state, "etcd"):
        log(f"starting etcd on 127.0.0.1:{chosen['etcd_client']}")
        process = _start(
            state,
            "etcd",
            [
                str(binaries / "etcd"),
                "--name=treadle",
                f"--data-dir={state / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{chosen['etcd_client']}",
                f"--advertise-client-urls=http://127.0.0.1:{chosen['etcd_client']}",
                f"--listen-peer-urls=http://127.0.0.1:{chosen['etcd_peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{chosen['etcd_peer']}",
                f"--initial-cluster=treadle=http://127.0.0.1:{chosen['etcd_peer']}",
                "--unsafe-no-fsync=false",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
        )
        _wait(
            "etcd",
            lambda: _get(f"http://127.0.0.1:{chosen['etcd_client']}/health")[0] == 200,
            state,
            "etcd",
            process,
        )

    if not running_pid(state, "kube-apiserver"):
        log(f"starting kube-apiserver on https://{host}:{chosen['apiserver']}")
        process = _start(
            state,
            "kube-apiserver",
            [
                str(binaries / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{chosen['etcd_client']}",
                f"--bind-address={host}",
                f"--advertise-address={host}",
                f"--secure-port={chosen['apiserver']}",
                f"--cert-dir={state / 'pki'}",
                f"--tls-cert-file={pki.path('apiserver.crt')}",
                f"--tls-private-key-file={pki.path('apiserver.key')}",
                f"--client-ca-file={pki.path('ca.crt')}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.path('sa.pub')}",
                f"--service-account-signing-key-file={pki.path('sa.key')}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--admission-control-config-file={pki.write_admission_config()}",
                "--allow-privileged=true",
                "--enable-aggregator-routing=true",
                # Aggregated APIs (Treadle's log API) learn the user from these headers, set
                # only by a caller presenting the front proxy's certificate.
                f"--requestheader-client-ca-file={pki.path('front-proxy-ca.crt')}",
                f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.path('front-proxy-client.crt')}",
                f"--proxy-client-key-file={pki.path('front-proxy-client.key')}",
                f"--kubelet-client-certificate={pki.path('apiserver-kubelet-client.crt')}",
                f"--kubelet-client-key={pki.path('apiserver-kubelet-client.key')}",
                f"--kubelet-certificate-authority={pki.path('ca.crt')}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                "--v=1",
            ],
        )
        _wait(
            "kube-apiserver",
            lambda: _get(f"https://{host}:{chosen['apiserver']}/readyz", context)[0] == 200,
            state,
            "kube-apiserver",
            process,
        )

    if not running_pid(state, "kube-controller-manager"):
        log("starting kube-controller-manager")
        _start(
            state,
            "kube-controller-manager",
            [
                str(binaries / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={chosen['controller_manager']}",
                f"--cert-dir={state / 'pki' / 'controller-manager'}",
                "--leader-elect=false",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={pki.path('sa.key')}",
                f"--root-ca-file={pki.path('ca.crt')}",
                f"--cluster-signing-cert-file={pki.path('ca.crt')}",
                f"--cluster-signing-key-file={pki.path('ca.key')}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*",
                "--v=1",
            ],
        )

    if not running_pid(state, "node-agent"):
        log(f"starting the node agent (node {NODE_NAME})")
        _start(
            state,
            "node-agent",
            [
                sys.executable,
                str(REPO / "hack" / "nodeagent.py"),
                f"--kubeconfig={kubeconfig}",
                f"--node-name={NODE_NAME}",
                f"--state-dir={state / 'agent'}",
                f"--kubelet-port={chosen['kubelet']}",
                f"--tls-cert={pki.path('kubelet.crt')}",
                f"--tls-key={pki.path('kubelet.key')}",
                f"--client-ca={pki.path('ca.crt')}",
                *([f"--network={state / 'network.json'}"] if network else []),
            ],
            env={"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
        )

    base = f"https://{host}:{chosen['apiserver']}"
    if network:
        _start_network(state, network, binaries, kubeconfig, base, context)

    def ready() -> bool:
        # The node is Ready and the controller manager has created the default ServiceAccount.
        code, body = _get(f"{base}/api/v1/nodes/{NODE_NAME}", context)
        if code != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return False
        return _get(f"{base}/api/v1/namespaces/default/serviceaccounts/default", context)[0] == 200

    _wait("the node and the default ServiceAccount", ready, state, "node-agent")
    if network:
        _wait(
            "cluster DNS",
            lambda: clusterdns.answers(network, f"kubernetes.default.svc.{podnet.CLUSTER_DOMAIN}"),
            state,
            "coredns",
        )
    for component in components(state):
        if not running_pid(state, component):
            raise SystemExit(f"{component} is not running; see {state / 'logs' / component}.log")
    log(f"cluster up in {time.monotonic() - started:.1f} s; kubeconfig: {kubeconfig}")


def _start_network(
    state: Path,
    network: podnet.Network,
    binaries: Path,
    kubeconfig: Path,
    base: str,
    context: ssl.SSLContext,
) -> None:
    """kube-proxy and CoreDNS in the node namespace, and the kube-dns Service."""
    if not running_pid(state, "kube-proxy"):
        log(f"starting kube-proxy (nftables) in {network.node_netns}")
        _start(
            state,
            "kube-proxy",
            [
                str(binaries / "kube-proxy"),
                f"--kubeconfig={kubeconfig}",
                "--proxy-mode=nftables",
                f"--hostname-override={NODE_NAME}",
                f"--cluster-cidr={network.pod_cidr}",
                "--healthz-bind-address=127.0.0.1:10256",
                "--metrics-bind-address=127.0.0.1:10249",
                "--conntrack-max-per-core=0",
                "--v=1",
            ],
            netns=network.node_netns,
        )
    clusterdns.publish(base, context, network)
    if not running_pid(state, "coredns"):
        log(f"starting CoreDNS on {network.node_ip}:53 (Service {podnet.DNS_SERVICE_IP})")
        corefile = clusterdns.write_corefile(state, kubeconfig)
        _start(
            state,
            "coredns",
            [str(binaries / "coredns"), "-conf", str(corefile)],
            netns=network.node_netns,
        )


def down() -> None:
    state = state_dir()
    for component in reversed(components(state)):
        if stop_component(state, component):
            log(f"stopped {component}")
    log("cluster down")


def status() -> int:
    state = state_dir()
    alive = 0
    for component in components(state):
        pid = running_pid(state, component)
        alive += pid is not None
        print(f"{component:<24} {'running, pid ' + str(pid) if pid else 'stopped'}")
    print(f"kubeconfig               {state / 'kubeconfig'}")
    return 0 if alive == len(components(state)) else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="hack/cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status", "purge", "kubeconfig"))
    args = parser.parse_args()
    if args.command == "up":
        try:
            up()
        except (SystemExit, Exception):
            log("start failed; stopping what did start")
            down()
            raise
    elif args.command == "down":
        down()
    elif args.command == "purge":
        down()
        network = podnet.load(state_dir())
        if network:
            podnet.remove(network)
        shutil.rmtree(state_dir(), ignore_errors=True)
        log(f"removed {state_dir()}")
    elif args.command == "kubeconfig":
        print(state_dir() / "kubeconfig")
    else:
        return status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
