"""The chart's two replicas as pods on a local cluster of their own: one leads, the other
stands by; the leader pod killed mid-run hands over within the Lease's duration, and the
running workflow finishes with every task run once (the one in flight at most twice)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from support.chart import LEASE_SECONDS, SYSTEM, Helm, leader, own_cluster


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


def test_a_standby_pod_takes_over_from_a_killed_leader_pod_and_the_workflow_finishes(
    tmp_path: Path,
) -> None:
    with own_cluster(tmp_path) as cluster:
        Helm(cluster).install()
        first = leader(cluster)
        log = tmp_path / "ran.log"
        cluster.kubectl("apply", "-n", "default", "-f", "-", input=chain(log, 6))
        cluster.wait("twf/long", "default", "jsonpath={.status.tasks.t1.attempts}=1", 120)
        # No grace: the node agent SIGKILLs the pod's processes, as a node crash would.
        cluster.kubectl("delete", "pod", first, "-n", SYSTEM, "--grace-period=0", "--force")
        killed = time.monotonic()
        leader(cluster, timeout=LEASE_SECONDS + 20, not_=first)
        handed_over = time.monotonic() - killed
        assert handed_over <= LEASE_SECONDS + 5, f"hand-over took {handed_over:.1f} s"
        cluster.wait("twf/long", "default", "condition=Ready", timeout_seconds=180)
        ran = log.read_text().split()
        assert [t for i, t in enumerate(ran) if t not in ran[:i]] == [f"t{i}" for i in range(6)]
        assert len(ran) <= 7, ran
