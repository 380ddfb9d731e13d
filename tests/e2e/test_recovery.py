"""Failures lose nothing: status is the record of truth, results wait in Redis."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import redis.asyncio as aioredis

from support.cluster import Cluster
from support.faults import worker_pids
from support.operator import OperatorProcess
from support.redis_server import RedisServer


def chain(name: str, log: Path, length: int, script: str = "echo {task} >> {log}; sleep 1") -> str:
    """A chain of tasks; each appends its name to `log` (the side-effect log) and takes 1 s."""
    tasks = []
    for index in range(length):
        task = {
            "name": f"t{index}",
            "command": {"args": ["sh", "-c", script.format(task=f"t{index}", log=log)]},
        }
        if index:
            task["dependsOn"] = [f"t{index - 1}"]
        tasks.append(task)
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"tasks": tasks},
    }
    return json.dumps(body)


def test_the_operator_killed_mid_run_and_restarted_finishes_with_nothing_lost_or_run_twice(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=chain("survivor", log, 4))
    crds.wait(
        "twf/survivor", namespace, "jsonpath={.status.tasks.t1.attempts}=1", timeout_seconds=120
    )
    operator.crash_and_restart()
    crds.wait("twf/survivor", namespace, "condition=Ready", timeout_seconds=180)
    assert log.read_text().splitlines() == ["t0", "t1", "t2", "t3"]
    assert crds.get("twf", "survivor", namespace)["status"]["progress"] == "4/4"


def test_a_worker_pod_deleted_mid_task_loses_nothing_and_runs_nothing_twice(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=chain("resilient", log, 3))
    crds.wait(
        "twf/resilient", namespace, "jsonpath={.status.tasks.t1.attempts}=1", timeout_seconds=120
    )
    # Graceful deletion: the worker finishes its in-flight task, then a new pod takes over.
    crds.kubectl(
        "delete", "pod", "-l", "treadle.dev/workflow=resilient", "-n", namespace, "--timeout=60s"
    )
    crds.wait("twf/resilient", namespace, "condition=Ready", timeout_seconds=180)
    assert log.read_text().splitlines() == ["t0", "t1", "t2"]


async def test_redis_losing_all_its_data_mid_run_loses_no_task(
    crds: Cluster,
    operator: OperatorProcess,
    namespace: str,
    tmp_path: Path,
    redis_server_process: RedisServer,
) -> None:
    log = tmp_path / "ran.log"
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=chain("amnesia", log, 4))
    crds.wait(
        "twf/amnesia", namespace, "jsonpath={.status.tasks.t1.attempts}=1", timeout_seconds=120
    )
    client = aioredis.Redis.from_url(redis_server_process.url)
    await client.flushall()
    await client.aclose()
    crds.wait("twf/amnesia", namespace, "condition=Ready", timeout_seconds=180)
    ran = log.read_text().splitlines()
    # Status is the record of truth: every task ran, in order; only the attempt in flight when
    # the data vanished may have run again.
    assert [name for index, name in enumerate(ran) if name not in ran[:index]] == [
        "t0",
        "t1",
        "t2",
        "t3",
    ]
    assert len(ran) <= 5


def test_a_worker_process_sigkilled_mid_task_loses_nothing_and_applies_nothing_twice(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    """The task in hand is re-delivered by the reaper (after 25 s of silence) and run again;
    its effect, made at its end, happens once."""
    log, started = tmp_path / "ran.log", tmp_path / "started.log"
    script = f"echo {{task}} >> {started}; sleep 2; echo {{task}} >> {{log}}"
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=chain("killed", log, 3, script))
    crds.wait(
        "twf/killed", namespace, "jsonpath={.status.tasks.t1.attempts}=1", timeout_seconds=120
    )
    deadline = time.monotonic() + 30
    while "t1" not in (started.read_text() if started.exists() else "").split():
        assert time.monotonic() < deadline, "t1 never started"
        time.sleep(0.05)
    uid = crds.get("twf", "killed", namespace)["metadata"]["uid"]
    [pid] = worker_pids(f"wf-{uid}")
    os.kill(pid, signal.SIGKILL)
    crds.wait("twf/killed", namespace, "condition=Ready", timeout_seconds=180)
    assert log.read_text().splitlines() == ["t0", "t1", "t2"]
    assert started.read_text().splitlines() == ["t0", "t1", "t1", "t2"]
