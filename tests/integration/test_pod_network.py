"""Pods on the local cluster have a network of their own (hack/podnet.py): an address each,
Services through kube-proxy, names through CoreDNS, and the namespace goes with the pod."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from support.cluster import Cluster, host_address

SERVE = (
    "import http.server as h, os\n"
    "class H(h.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers()\n"
    "        self.wfile.write(os.environ['ME'].encode())\n"
    "h.HTTPServer(('0.0.0.0', 8080), H).serve_forever()\n"
)


def server(name: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "echo"}},
        "spec": {
            "containers": [{
                "name": "main", "image": "ignored", "command": ["python3", "-c", SERVE],
                "env": [{"name": "ME", "value": name}],
                "readinessProbe": {"httpGet": {"port": 8080}, "periodSeconds": 1},
            }],
            **spec,
        },
    }  # fmt: skip


def client(name: str, script: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": "ignored", "command": ["python3", "-c", script]}
            ],
        },
    }


@pytest.fixture
def networked(cluster: Cluster) -> Cluster:
    if host_address() is None:
        pytest.skip("this machine's local cluster runs pods on the host's network (not root)")
    return cluster


def apply(cluster: Cluster, namespace: str, *objects: dict[str, object]) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=body)


def test_two_pods_listen_on_one_port_each_at_its_own_address_behind_a_service(
    networked: Cluster, namespace: str
) -> None:
    cluster = networked
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    apply(cluster, namespace, server("one"), server("two"), service)
    for name in ("one", "two"):
        cluster.wait(f"pod/{name}", namespace, "condition=Ready", timeout_seconds=60)
    ips = {n: cluster.get("pod", n, namespace)["status"]["podIP"] for n in ("one", "two")}
    assert ips["one"] != ips["two"]
    assert all(ip.startswith("10.244.") for ip in ips.values())
    script = (
        "import socket, urllib.request\n"
        f"name = 'echo.{namespace}.svc.cluster.local'\n"
        "print(socket.gethostbyname(name) == socket.gethostbyname('echo'))\n"
        "import time\n"
        "seen, deadline = set(), time.monotonic() + 20\n"
        "while len(seen) < 2 and time.monotonic() < deadline:\n"  # kube-proxy may lag a pod
        "    seen.add(urllib.request.urlopen('http://echo', timeout=5).read().decode())\n"
        "print(sorted(seen))\n"
        f"print(urllib.request.urlopen('http://{ips['one']}:8080', timeout=5).read().decode())\n"
        "print(socket.gethostbyname('kubernetes.default.svc'))\n"
    )
    apply(cluster, namespace, client("client", script))
    cluster.wait("pod/client", namespace, "jsonpath={.status.phase}=Succeeded", 90)
    out = cluster.kubectl("logs", "-n", namespace, "client").stdout.split("\n")
    assert out[:4] == ["True", "['one', 'two']", "one", "10.0.0.1"], out


def test_a_pods_namespace_and_address_go_with_it_and_host_network_pods_share_the_nodes(
    networked: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster = networked
    apply(cluster, namespace, server("own"), server("shared", hostNetwork=True))
    for name in ("own", "shared"):
        cluster.wait(f"pod/{name}", namespace, "condition=Ready", timeout_seconds=60)
    own, shared = (cluster.get("pod", n, namespace) for n in ("own", "shared"))
    slot = json.loads((cluster.kubeconfig.parent / "network.json").read_text())["slot"]
    assert shared["status"]["podIP"] == f"10.245.{slot}.2"
    uid = own["metadata"]["uid"].replace("-", "")[:12]
    netns = Path(f"/run/netns/treadle{slot}-{uid}")
    assert netns.exists()
    addresses = subprocess.run(
        ["ip", "-n", netns.name, "-j", "addr", "show", "eth0"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(addresses.stdout)[0]["addr_info"][0]["local"] == own["status"]["podIP"]
    cluster.kubectl("delete", "pod", "own", "shared", "-n", namespace, "--timeout=60s")
    assert not netns.exists()


def test_the_gateway_keeps_its_mac_while_pods_come_and_go(networked: Cluster) -> None:
    """A bridge without a MAC of its own takes its ports' lowest: a pod leaving would change
    the gateway's MAC under every other pod and stall their connections until ARP caught up
    (seconds in which a worker could neither publish results nor keep its tasks alive)."""
    node = json.loads((networked.kubeconfig.parent / "network.json").read_text())["nodeNetns"]

    def bridge_mac() -> str:
        shown = subprocess.run(
            ["ip", "-n", node, "-j", "link", "show", "br0"],
            capture_output=True,
            text=True,
            check=True,
        )
        return str(json.loads(shown.stdout)[0]["address"])

    before = bridge_mac()
    # A port with a MAC below any a veth gets at random, as a pod's would be.
    port = ("trdmac0", "trdmac1")
    subprocess.run(["ip", "-n", node, "link", "del", port[0]], capture_output=True)
    subprocess.run(
        ["ip", "-n", node, "link", "add", port[0], "address", "00:00:5e:00:53:01",
         "type", "veth", "peer", "name", port[1]],
        check=True,
    )  # fmt: skip
    try:
        subprocess.run(["ip", "-n", node, "link", "set", port[0], "master", "br0"], check=True)
        subprocess.run(["ip", "-n", node, "link", "set", port[0], "up"], check=True)
        assert bridge_mac() == before
    finally:
        subprocess.run(["ip", "-n", node, "link", "del", port[0]], check=True)
    assert bridge_mac() == before
