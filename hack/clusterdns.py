"""Cluster DNS for the local cluster: CoreDNS's Corefile, the kube-dns Service that pods'
resolv.conf names, and a check that it answers.

CoreDNS runs in the node namespace (hack/podnet.py) as a process of the cluster, not as a pod:
it starts with the control plane, before any pod needs a name.  The kube-dns Service has no
selector; its EndpointSlice names CoreDNS's address, so pods reach it through kube-proxy at
DNS_SERVICE_IP like on any cluster.
"""

from __future__ import annotations

import json
import random
import socket
import ssl
import struct
import urllib.error
import urllib.request
from pathlib import Path

from podnet import CLUSTER_DOMAIN, DNS_SERVICE_IP, Network

COREFILE = """\
.:53 {{
    errors
    health 127.0.0.1:10054
    ready 127.0.0.1:10055
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} treadle-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    forward . /etc/resolv.conf
    cache 5
    loadbalance
}}
"""


def write_corefile(state: Path, kubeconfig: Path) -> Path:
    path = state / "coredns" / "Corefile"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(COREFILE.format(domain=CLUSTER_DOMAIN, kubeconfig=kubeconfig))
    return path


def _send(base: str, context: ssl.SSLContext, method: str, path: str, body: object) -> int:
    return _call(base, context, method, path, body)[0]


def _call(
    base: str, context: ssl.SSLContext, method: str, path: str, body: object
) -> tuple[int, str]:
    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")[:500]


def publish(base: str, context: ssl.SSLContext, network: Network) -> None:
    """The kube-dns Service and its EndpointSlice (created once, updated to this address)."""
    labels = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
    ]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
        "spec": {
            "clusterIP": DNS_SERVICE_IP,
            "ports": [{**p, "targetPort": 53} for p in ports],
        },
    }
    services = "/api/v1/namespaces/kube-system/services"
    code, detail = _call(base, context, "GET", f"{services}/kube-dns", None)
    if code == 404:  # (a POST of an existing one fails on its address, not its name)
        code, detail = _call(base, context, "POST", services, service)
    if code not in (200, 201):
        raise SystemExit(f"creating the kube-dns Service: HTTP {code}: {detail}")
    name = "kube-dns-local"
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {
                "kubernetes.io/service-name": "kube-dns",
                "endpointslice.kubernetes.io/managed-by": "local-cluster.treadle.dev",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [network.node_ip], "conditions": {"ready": True}}],
        "ports": ports,
    }
    slices = "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices"
    code, detail = _call(base, context, "POST", slices, slice_)
    if code == 409:  # from an earlier start: this one's address may differ
        _call(base, context, "DELETE", f"{slices}/{name}", {})
        code, detail = _call(base, context, "POST", slices, slice_)
    if code not in (200, 201):
        raise SystemExit(f"writing the kube-dns EndpointSlice: HTTP {code}: {detail}")


def _query(name: str) -> tuple[int, bytes]:
    ident = random.randrange(1 << 16)
    header = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return ident, header + labels + b"\0" + struct.pack(">HH", 1, 1)


def answers(network: Network, name: str, timeout: float = 1.0) -> bool:
    """True when CoreDNS answers an A query for `name` with at least one record."""
    ident, packet = _query(name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, (network.node_ip, 53))
            reply = sock.recv(4096)
        except OSError:
            return False
    if len(reply) < 12:
        return False
    got, flags, _, count = struct.unpack(">HHHH", reply[:8])
    return got == ident and flags & 0xF == 0 and count > 0
