"""Scheduled runs beside Kubernetes CronJob: N CronJobs on a one-minute schedule (the local
cluster's kube-controller-manager runs the CronJob and Job controllers), then N SyncJobs with
pods for runs, then N SyncJobs whose runs are one-task Workflows on a warm WorkerPool, one
after the other on the cluster `make run` started, each in a namespace of its own.

    .venv/bin/python bench/syncjobs.py --jobs 500 --slots 2 [--runs cronjobs,pods,workflows]

Each run writes the moment it starts (`date +%s.%N`) to a shared log: a pod's container (a
CronJob's Job's, or a SyncJob's run pod), or the one task of a run's Workflow (a command run by
a pool worker). So the start delay is what a user sees: from the minute the slot fires to the
run's process starting (the controller's decision, then the Job's or pod's creation, binding
and start; or the operator's decision and locks, then the pod, or the Workflow's creation,
admission, enqueue and the worker's start of its task). Reports p50/p95/p99 of it over
`--slots` whole slots, and the operator's CPU over them. Writes
bench/results/syncjobs-<N>.json (the kinds side by side, with ratios) and .png (histograms).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    cpu_seconds,
    kubectl,
    namespace,
    operator_pid,
    percentile,
    save_plot,
    warm_pool,
    write,
)

POOL_WORKERS = 2


KINDS = ("cronjobs", "pods", "workflows")
NOTE = (
    "Delays count runs whose process started within a minute of their slot; a CronJob run "
    "that started later, or not at all (its next slot came first), is missing from "
    "runs_started, so CronJob's percentiles and the ratios understate its lateness."
)
LABELS = {
    "cronjobs": "Kubernetes CronJobs (a Job and its pod per slot)",
    "pods": "SyncJobs, a run pod per slot",
    "workflows": f"SyncJobs, a one-task Workflow per slot on a WorkerPool of {POOL_WORKERS}",
}


def cron_job(index: int, log: Path) -> dict[str, object]:
    """The anchor: the same container as a SyncJob's run pod, with CronJob's defaults where
    they match a SyncJob's (Forbid, a short history)."""
    script = f"echo {index} $(date +%s.%N) >> {log}"
    container = {"name": "sync", "image": "x", "command": ["sh", "-c", script]}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": f"cron-{index:04d}"},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,
                    "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
                }
            },
        },
    }


def job(index: int, log: Path, kind: str, pool: str | None) -> dict[str, object]:
    if kind == "cronjobs":
        return cron_job(index, log)
    script = f"echo {index} $(date +%s.%N) >> {log}"
    spec: dict[str, Any] = {
        "schedule": "* * * * *",
        "pipeline": f"p{index:04d}",
        "successfulRunsHistoryLimit": 1,
    }
    if kind == "pods":
        spec["template"] = {
            "spec": {
                "containers": [{"name": "sync", "image": "x", "command": ["sh", "-c", script]}]
            }
        }
    else:
        tasks = [{"name": "sync", "command": {"args": ["sh", "-c", script]}}]
        spec["workflow"] = {"spec": {"workerPool": pool, "tasks": tasks}}
    return {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "SyncJob",
        "metadata": {"name": f"sync-{index:04d}"},
        "spec": spec,
    }


def measure(kind: str, jobs: int, slots: int) -> tuple[dict[str, Any], list[float]]:
    space = f"bench-sync-{kind}-{int(time.time())}"
    namespace(space)
    pool = warm_pool(space, POOL_WORKERS, slots=64) if kind == "workflows" else None
    log = Path(tempfile.mkdtemp(prefix="treadle-sync-")) / "starts.log"
    log.touch()
    log.chmod(0o666)
    items = [job(i, log, kind, pool) for i in range(jobs)]
    kubectl(
        "create",
        "-n",
        space,
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
    )
    # Measure whole slots only: from the first minute that begins after every job exists.
    first = (int(time.time()) // 60 + 1) * 60
    end = first + 60 * slots
    time.sleep(max(0.0, first - time.time()))
    pid = operator_pid()
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    time.sleep(max(0.0, end - time.time()))
    cpu = cpu_seconds(pid) - cpu_before
    wall = time.monotonic() - wall_before
    time.sleep(45)  # the last slot's stragglers
    delays, starts = [], 0
    for line in log.read_text().splitlines():
        _, moment = line.split()
        started = float(moment)
        if first <= started < end + 60:
            slot = int(started) // 60 * 60
            if slot < end:
                starts += 1
                delays.append(started - slot)
    # Gone before the next kind starts: deleting 500 jobs and their runs loads the API server.
    kubectl("delete", "namespace", space, "--wait=true", "--timeout=600s", check=False)
    result = {
        "runs": LABELS[kind],
        "runs_expected": jobs * slots,
        "runs_started": starts,
        "start_delay_seconds": {
            "p50": round(percentile(delays, 0.50), 2),
            "p95": round(percentile(delays, 0.95), 2),
            "p99": round(percentile(delays, 0.99), 2),
            "max": round(max(delays), 2),
        }
        if delays
        else None,
        "operator_cpu_seconds": round(cpu, 1),
        "operator_cpu_share_of_a_core": round(cpu / wall, 3),
    }
    return result, delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument(
        "--runs", default=",".join(KINDS), help=f"a comma list of {', '.join(KINDS)} (default all)"
    )
    args = parser.parse_args()
    kinds = [kind for kind in KINDS if kind in args.runs.split(",")]
    measured = {kind: measure(kind, args.jobs, args.slots) for kind in kinds}
    result: dict[str, Any] = {
        "jobs": args.jobs,
        "slots": args.slots,
        "schedule": "* * * * *",
        "note": NOTE,
    }
    for kind, (found, _) in measured.items():
        result[kind] = found
    percentiles = {k: found["start_delay_seconds"] for k, (found, _) in measured.items()}
    for name, (over, under) in {
        "syncjob_over_cronjob_ratio": ("pods", "cronjobs"),
        "scheduled_workflow_over_cronjob_ratio": ("workflows", "cronjobs"),
        "workflow_over_pod_ratio": ("workflows", "pods"),
    }.items():
        if percentiles.get(over) and percentiles.get(under):
            result[name] = {
                key: round(percentiles[over][key] / percentiles[under][key], 2)
                for key in ("p50", "p99")
            }
    png = write(f"syncjobs-{args.jobs}", result)
    colours = {"cronjobs": "#868e96", "pods": "#e8590c", "workflows": "#1971c2"}

    def draw(axis: Any) -> None:
        for kind, (_, delays) in measured.items():
            axis.hist(delays, bins=40, alpha=0.6, color=colours[kind], label=LABELS[kind])
        axis.legend()

    save_plot(
        png,
        f"{args.jobs} scheduled jobs of each kind, every minute, {args.slots} slots",
        "seconds from the slot to the run's process start",
        "runs",
        draw,
    )


if __name__ == "__main__":
    main()
