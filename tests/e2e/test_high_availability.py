"""Two operator replicas with leader election on a cluster of their own: one leads, the other
stands by; the leader SIGKILLed mid-run hands over within the Lease's duration, and the running
workflow finishes with every task run once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

from support import operator as operator_process
from support.cluster import CLUSTER, REPO, Cluster
from support.redis_server import RedisServer

LEASE_SECONDS = 15


def chain(log: Path, length: int) -> str:
    tasks = [
        {
            "name": f"t{i}",
            "command": {"args": ["sh", "-c", f"echo t{i} >> {log}; sleep 1"]},
            **({"dependsOn": [f"t{i - 1}"]} if i else {}),
        }
        for i in range(length)
    ]
    body = {"apiVersion": "treadle.dev/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "long"}, "spec": {"tasks": tasks}}  # fmt: skip
    return json.dumps(body)


def holder(cluster: Cluster) -> str:
    lease = cluster.kubectl(
        "get", "lease", "treadle-operator", "-n", "default", "-o", "json", check=False
    )
    return str(json.loads(lease.stdout)["spec"].get("holderIdentity")) if lease.stdout else ""


def test_a_standby_takes_over_from_a_killed_leader_and_the_workflow_finishes(
    tmp_path: Path, redis_server_process: RedisServer
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["TREADLE_STATE_DIR"] = str(tmp_path / "state")
    subprocess.run([str(CLUSTER), "up"], env=env, check=True, timeout=300)
    cluster = Cluster(tmp_path / "state" / "kubeconfig")
    replicas: list[operator_process.OperatorProcess] = []
    try:
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        redis_url = redis_server_process.url.rsplit("/", 1)[0] + "/2"
        for name, leading in (("a", True), ("b", False)):
            replicas.append(operator_process.start(
                cluster, tmp_path / f"operator-{name}.log", redis_url, webhook=False,
                extra=["--leader-election-namespace=default"], leading=leading,
            ))  # fmt: skip
        leader, standby = replicas
        # Outside a pod, a replica holds the Lease as <host>-<pid>.
        leader_id, standby_id = (f"{socket.gethostname()}-{r.process.pid}" for r in replicas)
        assert holder(cluster) == leader_id
        log = tmp_path / "ran.log"
        cluster.kubectl("apply", "-n", "default", "-f", "-", input=chain(log, 6))
        cluster.wait("twf/long", "default", "jsonpath={.status.tasks.t1.phase}=Queued", 120)
        leader.process.kill()
        killed = time.monotonic()
        while holder(cluster) != standby_id:
            assert time.monotonic() - killed < LEASE_SECONDS + 10, "no hand-over"
            time.sleep(0.5)
        handed_over = time.monotonic() - killed
        assert handed_over <= LEASE_SECONDS + 5
        cluster.wait("twf/long", "default", "condition=Ready", timeout_seconds=180)
        ran = log.read_text().split()
        # Every task ran; only the one in flight at the kill may have run again.
        assert [t for i, t in enumerate(ran) if t not in ran[:i]] == [f"t{i}" for i in range(6)]
        assert len(ran) <= 7
        assert f"standing by: {leader_id} leads" in standby.log.read_text()
    finally:
        for replica in replicas:
            replica.stop()
        subprocess.run([str(CLUSTER), "down"], env=env, timeout=120)
