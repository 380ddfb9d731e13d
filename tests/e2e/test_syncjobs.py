"""SyncJobs end to end on the local cluster, with schedules in seconds (a six-field cron) and
retry bounds scaled down so each test takes well under a minute."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support.cluster import Cluster
from support.operator import OperatorProcess
from support.syncjobs import eventually, reasons, status_of


def sync_job(name: str, script: str, *, schedule: str = "*/20 * * * * *", **spec: Any) -> str:
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "SyncJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "skippedRetry": {"ratio": 0.1, "minSeconds": 2, "maxSeconds": 3},
            "template": {
                "spec": {
                    "containers": [{"name": "sync", "image": "x", "command": ["sh", "-c", script]}]
                }
            },
            **spec,
        },
    }
    return json.dumps(body)


def test_a_job_whose_pipeline_lock_is_held_by_hand_is_skipped_retried_in_its_slot_then_runs(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    ran = tmp_path / "ran.log"
    crds.plugin("lock", "hold", "pipeline", "orders", "--for", "5m", "-n", namespace)
    crds.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=sync_job("orders", f"echo ran >> {ran}", pipeline="orders"),
    )  # fmt: skip
    skipped = eventually(
        lambda: (s := status_of(crds, namespace, "orders")).get("attemptsInSlot", 0) >= 2 and s,
        "two skipped attempts in a slot",
    )
    assert (skipped["lastOutcome"], skipped["lastSkipReason"]) == ("Skipped", "PipelineLocked")
    assert skipped["lastSkipHolder"].startswith("kubectl:")
    slot = skipped["currentSlot"]
    assert not ran.exists()
    crds.plugin("lock", "release", "pipeline", "orders", "-n", namespace)
    done = eventually(
        lambda: (s := status_of(crds, namespace, "orders")).get("lastOutcome") == "Succeeded" and s,
        "a successful run after the release",
    )
    assert done["currentSlot"] == slot  # retried inside the same slot
    assert done["attemptsInSlot"] >= 3
    assert ran.read_text() == "ran\n"
    told = reasons(crds, namespace, "orders")
    assert any(
        r.startswith("Skipped: skipped: treadle-pipeline-orders is held by kubectl:") for r in told
    )
    assert any(
        r.startswith("RetryingSkipped: Retrying skipped run within current slot") for r in told
    )
    assert any(r.startswith("Succeeded:") for r in told)
    printed = crds.kubectl("get", "sj", "orders", "-n", namespace).stdout
    assert "Succeeded" in printed


def test_a_retry_pending_when_the_next_slot_starts_is_abandoned(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    crds.plugin("lock", "hold", "pipeline", "busy", "--for", "5m", "-n", namespace)
    # A 10 s slot and a retry every 8 s: the second retry would fall into the next slot.
    job = sync_job(
        "busy", "true", schedule="*/10 * * * * *", pipeline="busy",
        skippedRetry={"ratio": 0.8, "minSeconds": 8, "maxSeconds": 8},
    )  # fmt: skip
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=job)
    first = eventually(
        lambda: status_of(crds, namespace, "busy").get("currentSlot"), "a first attempt"
    )
    later = eventually(
        lambda: (
            (s := status_of(crds, namespace, "busy")).get("currentSlot") not in (None, first) and s
        ),
        "an attempt in the next slot",
        timeout_seconds=30,
    )
    assert later["lastOutcome"] == "Skipped"
    assert later["attemptsInSlot"] == 1  # the new slot starts fresh
    told = reasons(crds, namespace, "busy")
    assert any(r.startswith("AbandonedRetry: Abandoning retry: new slot") for r in told), told


def test_a_failing_run_is_not_retried_until_the_next_slot(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    ran = tmp_path / "ran.log"
    job = sync_job("failing", f"date +%s >> {ran}; exit 3", schedule="*/10 * * * * *")
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=job)
    failed = eventually(
        lambda: (s := status_of(crds, namespace, "failing")).get("lastOutcome") == "Failed" and s,
        "a failed run",
        timeout_seconds=30,
    )
    assert failed["consecutiveFailures"] == 1
    again = eventually(
        lambda: (s := status_of(crds, namespace, "failing")).get("consecutiveFailures") == 2 and s,
        "a second failed run",
        timeout_seconds=30,
    )
    assert again["currentSlot"] != failed["currentSlot"]  # the next run came with the next slot
    starts = [int(line) for line in ran.read_text().split()]
    assert len(starts) == 2
    assert starts[1] - starts[0] >= 9  # once per 10 s slot, never retried inside it


def test_a_table_held_by_a_ddl_job_makes_a_writer_wait_then_run_or_skip_after_its_wait(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    log, done = tmp_path / "order.log", tmp_path / "migration-done"
    never = "0 0 1 1 *"  # these jobs run when asked
    # The migration holds its table until the test says it is done.
    migration = (
        f"echo migrate-start >> {log}; while [ ! -f {done} ]; do sleep 0.1; done; "
        f"echo migrate-end >> {log}"
    )
    jobs = [
        sync_job("migrate", migration, schedule=never, ddl=True, tables=["warehouse.orders"]),
        sync_job("writer", f"echo writer >> {log}", schedule=never, tables=["warehouse.orders"],
                 lockWaitSeconds=30),
        sync_job("impatient", f"echo impatient >> {log}", schedule=never,
                 tables=["warehouse.orders"], lockWaitSeconds=1),
    ]  # fmt: skip
    for job in jobs:
        crds.kubectl("apply", "-n", namespace, "-f", "-", input=job)
    crds.plugin("sync", "run", "migrate", "-n", namespace)
    eventually(lambda: log.exists() and "migrate-start" in log.read_text(), "the migration runs")
    skipped = crds.plugin("sync", "run", "impatient", "-n", namespace, check=False)
    assert skipped.returncode == 1  # sync run says what came of it
    assert "skipped: treadle-table-warehouse.orders is held by migrate-manual-" in skipped.stdout
    impatient = eventually(
        lambda: (s := status_of(crds, namespace, "impatient")).get("lastOutcome") and s,
        "the impatient writer's outcome",
    )
    assert (impatient["lastOutcome"], impatient["lastSkipReason"]) == ("Skipped", "TableLocked")
    assert impatient["lastSkipHolder"].startswith("migrate-manual-")
    # The writer waits for the table (up to its lockWaitSeconds), and so would `sync run`.
    crds.plugin("sync", "run", "writer", "-n", namespace, "--timeout", "0")
    eventually(
        lambda: status_of(crds, namespace, "writer").get("attemptsInSlot") is None,
        "the writer waiting for the table",
        timeout_seconds=5,
    )
    done.touch()
    writer = eventually(
        lambda: (s := status_of(crds, namespace, "writer")).get("lastOutcome") and s,
        "the patient writer's outcome",
    )
    assert writer["lastOutcome"] == "Succeeded"
    assert log.read_text().split() == ["migrate-start", "migrate-end", "writer"]


def test_the_operator_restarted_mid_run_keeps_the_slot_and_never_runs_it_twice(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    ran = tmp_path / "ran.log"
    job = sync_job("steady", f"echo start >> {ran}; sleep 3; echo end >> {ran}", pipeline="steady")
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=job)
    running = eventually(
        lambda: (s := status_of(crds, namespace, "steady")).get("activeRun") and s, "a run"
    )
    operator.crash_and_restart()
    done = eventually(
        lambda: (s := status_of(crds, namespace, "steady")).get("lastOutcome") == "Succeeded" and s,
        "the run's success after the restart",
    )
    assert done["currentSlot"] == running["currentSlot"]
    assert done["attemptsInSlot"] == 1
    assert ran.read_text().split() == ["start", "end"]
    locks = crds.plugin("lock", "list", "-n", namespace).stdout
    assert "(free)" in locks  # released after the run
    status = crds.plugin("sync", "status", "steady", "-n", namespace).stdout
    assert "Last outcome:" in status
    assert "Succeeded" in status
