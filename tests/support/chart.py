"""The chart installed with its defaults on a local cluster of a test's own."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.cluster import CLUSTER, REPO, Cluster

LEASE_SECONDS = 15
"""The operator's leader Lease duration (controllers/leadership.py), which the chart keeps."""

CHART = REPO / "charts" / "treadle"
RELEASE, SYSTEM = "treadle", "treadle-system"
IMAGE = ("--set", "image.repository=treadle", "--set", "image.tag=dev")
"""The one override a cluster without a registry needs (the node agent ignores images)."""


def tools_bin() -> str:
    return subprocess.run(
        [str(REPO / "hack" / "tools.sh"), "--print"], capture_output=True, text=True, check=True
    ).stdout.strip()


class Helm:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster, self.binary = cluster, f"{tools_bin()}/helm"

    def __call__(self, *args: str) -> str:
        result = subprocess.run(
            [self.binary, f"--kubeconfig={self.cluster.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"helm {args[0]}: {result.stderr}"
        return result.stdout

    def install(self, *values: str) -> str:
        return self("install", RELEASE, str(CHART), "-n", SYSTEM, "--create-namespace",
                    "--wait", "--timeout=180s", *IMAGE, *values)  # fmt: skip


@contextmanager
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A local cluster for one test (its own network, Services and DNS), down afterwards."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["TREADLE_STATE_DIR"] = str(tmp_path / "state")
    subprocess.run([str(CLUSTER), "up"], env=env, check=True, timeout=300)
    try:
        yield Cluster(tmp_path / "state" / "kubeconfig")
    finally:
        subprocess.run([str(CLUSTER), "purge"], env=env, timeout=120)


def leader(cluster: Cluster, timeout: float = 60, not_: str = "") -> str:
    """The pod that holds the leader Lease and carries the leader label (other than `not_`)."""
    deadline = time.monotonic() + timeout
    while True:
        lease = cluster.kubectl(
            "get", "lease", "treadle-operator", "-n", SYSTEM, "-o", "json", check=False
        )
        holder = json.loads(lease.stdout)["spec"].get("holderIdentity") if lease.stdout else None
        pods = json.loads(cluster.kubectl("get", "pods", "-n", SYSTEM, "-o", "json").stdout)
        labelled = [
            p["metadata"]["name"]
            for p in pods["items"]
            if p["metadata"].get("labels", {}).get("treadle.dev/leader") == "true"
        ]
        if holder and holder != not_ and labelled == [holder]:
            return str(holder)
        assert time.monotonic() < deadline, f"no single leader: Lease {holder}, label {labelled}"
        time.sleep(0.3)
