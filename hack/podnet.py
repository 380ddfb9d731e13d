"""The local cluster's pod network: a node network namespace per cluster, a bridge in it, and a
network namespace with a veth per pod.

    host (control plane)          node netns treadle<N>-node           pod netns
    trd<N>h 10.245.N.1/30  <--->  trd<N>n 10.245.N.2/30
                                  br0 10.244.N.1/24  <-- v<uid> <--->  eth0 10.244.N.k/24, lo

The host side address is where the control plane and the node agent's kubelet API listen for
pods (they keep 127.0.0.1 too where they can): it is local to this machine, nothing outside
routes to it.  The node namespace is the node's network: kube-proxy programs its nftables
there, CoreDNS answers there, and `hostNetwork: true` pods run there.  Each cluster gets its
own N (claimed by creating its node namespace), so several local clusters run side by side
with their own Services and kube-proxy rules.  The host routes the pod range to the node
namespace; the host itself forwards nothing, so pods reach only this machine's cluster
addresses.

Needs root (CAP_NET_ADMIN) and iproute2; `unavailable()` says why not, and the cluster then
runs every pod on the host's network as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
SLOTS = range(1, 255)
SERVICE_CIDR = "10.0.0.0/24"
DNS_SERVICE_IP = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"


def unavailable() -> str | None:
    """Why pods cannot get their own network here, or None when they can."""
    if os.environ.get("TREADLE_POD_NETWORK", "on") == "off":
        return "TREADLE_POD_NETWORK=off"
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "iproute2's ip is missing"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"the kernel refuses network namespaces: {probe.stderr.decode().strip()}"
    return None


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _sysctl(netns: str, key: str, value: str) -> None:
    ip("netns", "exec", netns, "sysctl", "-qw", f"{key}={value}")


@dataclass(frozen=True)
class Network:
    """One cluster's network, as recorded in its state directory (network.json)."""

    slot: int

    @property
    def node_netns(self) -> str:
        return f"treadle{self.slot}-node"

    @property
    def host_link(self) -> str:
        return f"trd{self.slot}h"

    @property
    def host_ip(self) -> str:
        """The host's side: where the API server and the kubelet API listen for pods."""
        return f"10.245.{self.slot}.1"

    @property
    def node_ip(self) -> str:
        """The node namespace's side: hostNetwork pods, kube-proxy and CoreDNS live here."""
        return f"10.245.{self.slot}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.slot}.0/24"

    @property
    def gateway(self) -> str:
        return f"10.244.{self.slot}.1"

    @property
    def bridge_mac(self) -> str:
        """br0's own MAC (locally administered, one per slot)."""
        return f"02:74:72:64:{self.slot // 256:02x}:{self.slot % 256:02x}"

    def pod_netns(self, uid: str) -> str:
        return f"treadle{self.slot}-{uid.replace('-', '')[:12]}"

    def as_json(self) -> dict[str, object]:
        return {
            **asdict(self),
            "hostIP": self.host_ip,
            "nodeIP": self.node_ip,
            "podCIDR": self.pod_cidr,
            "nodeNetns": self.node_netns,
            "serviceCIDR": SERVICE_CIDR,
            "dnsServiceIP": DNS_SERVICE_IP,
        }


def load(state: Path) -> Network | None:
    path = state / "network.json"
    if not path.exists():
        return None
    return Network(int(json.loads(path.read_text())["slot"]))


def _owner_path(slot: int) -> Path:
    return Path("/run/treadle-net") / str(slot)


def _collect_orphans() -> None:
    """Node namespaces whose cluster's state directory is gone (a test's temporary cluster)."""
    for owner in Path("/run/treadle-net").glob("*"):
        state = Path(owner.read_text().strip())
        mine = load(state) if state.is_dir() else None
        if mine is None or mine.slot != int(owner.name):
            remove(Network(int(owner.name)))


def ensure(state: Path) -> Network:
    """The cluster's network, set up (idempotent); a new cluster claims a free slot."""
    network = load(state)
    if network is None:
        _collect_orphans()
        for slot in SLOTS:
            if ip("netns", "add", f"treadle{slot}-node", check=False).returncode == 0:
                network = Network(slot)
                break
        else:
            raise RuntimeError("no free local-cluster network slot (254 clusters?)")
        (state / "network.json").write_text(json.dumps(network.as_json(), indent=2))
    _owner_path(network.slot).parent.mkdir(parents=True, exist_ok=True)
    _owner_path(network.slot).write_text(str(state))
    _set_up(network)
    return network


def _set_up(net: Network) -> None:
    ns = net.node_netns
    if not (NETNS_DIR / ns).exists():
        ip("netns", "add", ns)
    if ip("link", "show", net.host_link, check=False).returncode != 0:
        ip("link", "add", net.host_link, "type", "veth", "peer", "name", "uplink", "netns", ns)
    ip("addr", "replace", f"{net.host_ip}/30", "dev", net.host_link)
    ip("link", "set", net.host_link, "up")
    ip("-n", ns, "addr", "replace", f"{net.node_ip}/30", "dev", "uplink")
    ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", ns, "link", "set", "uplink", "up")
    if ip("-n", ns, "link", "show", "br0", check=False).returncode != 0:
        ip("-n", ns, "link", "add", "br0", "type", "bridge")
    # A bridge with no address of its own takes its ports' lowest MAC, so a pod coming or going
    # changes the gateway's MAC under every other pod: their packets go to the old one until
    # ARP notices, seconds in which every connection out of the pod (Redis, the API) stalls.
    ip("-n", ns, "link", "set", "br0", "address", net.bridge_mac)
    ip("-n", ns, "addr", "replace", f"{net.gateway}/24", "dev", "br0")
    ip("-n", ns, "link", "set", "br0", "up")
    ip("-n", ns, "route", "replace", "default", "via", net.host_ip)
    ip("route", "replace", net.pod_cidr, "via", net.node_ip, "dev", net.host_link)
    _sysctl(ns, "net.ipv4.ip_forward", "1")
    # Pod to Service to a pod on the same bridge: the bridged reply must pass conntrack.
    with contextlib.suppress(RuntimeError):
        _sysctl(ns, "net.bridge.bridge-nf-call-iptables", "1")


def remove(net: Network) -> None:
    """The cluster's network and every pod namespace in it (cluster purge)."""
    for path in NETNS_DIR.glob(f"treadle{net.slot}-*"):
        ip("netns", "del", path.name, check=False)
    ip("link", "del", net.host_link, check=False)
    ip("route", "del", net.pod_cidr, check=False)
    _owner_path(net.slot).unlink(missing_ok=True)


@dataclass(frozen=True)
class PodAddress:
    netns: str
    ip: str


class PodNetworks:
    """The node agent's side: a namespace, a veth on the bridge and an address per pod.

    An address is a file in `ipam_dir` named after it and holding its pod's uid, created with
    O_EXCL, so pods started at once never share one.  Many pods start and end at once (a
    minute's SyncJob runs), each in a thread of its own: a file may go while another thread
    reads the directory, which is no error.  When no address is free, the addresses of pods
    the agent no longer runs (`holds(uid)` False: their teardown failed, or an agent before
    this one died) are taken back first.
    """

    def __init__(
        self, net: Network, ipam_dir: Path, holds: Callable[[str], bool] | None = None
    ) -> None:
        self.net = net
        self.ipam = ipam_dir
        self.holds = holds

    def sweep(self) -> int:
        """Removes every pod namespace and address a previous agent left; returns how many."""
        removed = 0
        for path in NETNS_DIR.glob(f"treadle{self.net.slot}-*"):
            if path.name != self.net.node_netns:
                ip("netns", "del", path.name, check=False)
                removed += 1
        shutil.rmtree(self.ipam, ignore_errors=True)
        return removed

    def _claims(self) -> list[tuple[Path, str]]:
        """Each address file with the uid it holds (one that goes meanwhile is left out)."""
        found = []
        for held in self.ipam.iterdir() if self.ipam.is_dir() else ():
            try:
                found.append((held, held.read_text()))
            except FileNotFoundError:
                continue
        return found

    def _claim(self, uid: str) -> str:
        self.ipam.mkdir(parents=True, exist_ok=True)
        for held, owner in self._claims():
            if owner == uid:
                return held.name
        for _ in range(2):
            network = ipaddress.ip_network(self.net.pod_cidr)
            for address in list(network.hosts())[1:]:
                try:
                    fd = os.open(self.ipam / str(address), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    continue
                with os.fdopen(fd, "w") as handle:
                    handle.write(uid)
                return str(address)
            if not self.reclaim():
                break
        raise RuntimeError(f"no free address in {self.net.pod_cidr}")

    def reclaim(self) -> int:
        """Takes back the addresses (and namespaces) of pods the agent no longer runs; returns
        how many."""
        if self.holds is None:
            return 0
        stale = {owner for _, owner in self._claims() if owner and not self.holds(owner)}
        for owner in stale:
            self.detach(owner)
        return len(stale)

    def attach(self, uid: str) -> PodAddress:
        """The pod's namespace with loopback up and eth0 on the bridge (idempotent)."""
        address = self._claim(uid)
        netns = self.net.pod_netns(uid)
        veth = "v" + uid.replace("-", "")[:12]
        if not (NETNS_DIR / netns).exists():
            ip("netns", "add", netns)
        if ip("-n", netns, "link", "show", "eth0", check=False).returncode != 0:
            node = self.net.node_netns
            ip("-n", node, "link", "del", veth, check=False)
            peer = ("peer", "name", "eth0", "netns", netns)
            ip("-n", node, "link", "add", veth, "type", "veth", *peer)
            ip("-n", node, "link", "set", veth, "master", "br0")
            ip("-n", node, "link", "set", veth, "type", "bridge_slave", "hairpin", "on")
            ip("-n", node, "link", "set", veth, "up")
            ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", netns, "link", "set", "lo", "up")
            ip("-n", netns, "link", "set", "eth0", "up")
            ip("-n", netns, "route", "add", "default", "via", self.net.gateway)
        return PodAddress(netns, address)

    def detach(self, uid: str) -> None:
        """The pod's namespace goes (its veth with it), and its address is free again."""
        ip("netns", "del", self.net.pod_netns(uid), check=False)
        for held, owner in self._claims():
            if owner == uid:
                held.unlink(missing_ok=True)


def entering(netns: str) -> Callable[[], None]:
    """A preexec function: the child joins the network namespace `netns`."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    path = str(NETNS_DIR / netns)

    def enter() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns {netns}: {os.strerror(errno)}")
        finally:
            os.close(fd)

    return enter


def resolv_conf(namespace: str) -> str:
    """A pod's /etc/resolv.conf under dnsPolicy ClusterFirst, as a kubelet writes it."""
    search = f"{namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}"
    return f"search {search}\nnameserver {DNS_SERVICE_IP}\noptions ndots:5\n"


def hosts_file(address: str, hostname: str) -> str:
    return (
        f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{address}\t{hostname}\n"
    )


def pod_resolv_conf(spec: dict[str, Any], namespace: str, *, host_network: bool) -> str | None:
    """A pod's resolv.conf by its dnsPolicy and dnsConfig, as a kubelet writes it; None keeps
    the machine's own (Default, and ClusterFirst on the host network)."""
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    config = spec.get("dnsConfig") or {}
    if policy == "Default" or (policy == "ClusterFirst" and host_network):
        return None
    lines = [] if policy == "None" else resolv_conf(namespace).splitlines()
    if config.get("searches"):
        lines.append("search " + " ".join(config["searches"]))
    lines += [f"nameserver {server}" for server in config.get("nameservers") or []]
    options = [
        o["name"] + (f":{o['value']}" if o.get("value") else "")
        for o in config.get("options") or []
    ]
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def name_files(
    etc: Path, spec: dict[str, Any], namespace: str, address: str, name: str, *, host_network: bool
) -> list[tuple[str, str, bool]]:
    """Writes the pod's resolv.conf and hosts under `etc`; returns their read-only mounts."""
    etc.mkdir(parents=True, exist_ok=True)
    mounts = []
    resolv = pod_resolv_conf(spec, namespace, host_network=host_network)
    if resolv is not None:
        (etc / "resolv.conf").write_text(resolv)
        mounts.append((str(etc / "resolv.conf"), "/etc/resolv.conf", True))
    if not host_network:
        (etc / "hosts").write_text(hosts_file(address, spec.get("hostname") or name))
        mounts.append((str(etc / "hosts"), "/etc/hosts", True))
    return mounts
