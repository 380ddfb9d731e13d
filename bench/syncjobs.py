"""SyncJob scheduling: N SyncJobs on a one-minute schedule, on the cluster `make run` started.

    .venv/bin/python bench/syncjobs.py --jobs 500 --slots 2

Each run's container writes the moment it starts (`date +%s.%N`) to a shared log, so the start
delay is what a user sees: from the minute the slot fires to the run's process starting
(operator decision, locks, pod creation, binding and process start included). Reports p50/p95/
p99 of it over `--slots` whole slots, and the operator's CPU over them (seconds of CPU and the
share of one core). Writes bench/results/syncjobs-<N>.json and .png (the delays' histogram).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import cpu_seconds, kubectl, namespace, operator_pid, percentile, save_plot, write


def job(index: int, log: Path) -> dict[str, object]:
    return {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "SyncJob",
        "metadata": {"name": f"sync-{index:04d}"},
        "spec": {
            "schedule": "* * * * *",
            "pipeline": f"p{index:04d}",
            "successfulRunsHistoryLimit": 1,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "sync",
                            "image": "x",
                            "command": ["sh", "-c", f"echo {index} $(date +%s.%N) >> {log}"],
                        }
                    ]
                }
            },
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    space = f"bench-sync-{int(time.time())}"
    namespace(space)
    log = Path(tempfile.mkdtemp(prefix="treadle-sync-")) / "starts.log"
    log.touch()
    log.chmod(0o666)
    body = {"apiVersion": "v1", "kind": "List", "items": [job(i, log) for i in range(args.jobs)]}
    kubectl("create", "-n", space, "-f", "-", stdin=json.dumps(body))
    # Measure whole slots only: from the first minute that begins after every job exists.
    first = (int(time.time()) // 60 + 1) * 60
    end = first + 60 * args.slots
    time.sleep(max(0.0, first - time.time()))
    pid = operator_pid()
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    time.sleep(max(0.0, end - time.time()))
    cpu = cpu_seconds(pid) - cpu_before
    wall = time.monotonic() - wall_before
    time.sleep(30)  # the last slot's stragglers
    delays, starts = [], 0
    for line in log.read_text().splitlines():
        _, moment = line.split()
        started = float(moment)
        if first <= started < end + 60:
            slot = int(started) // 60 * 60
            if slot < end:
                starts += 1
                delays.append(started - slot)
    expected = args.jobs * args.slots
    result = {
        "jobs": args.jobs,
        "slots": args.slots,
        "runs_expected": expected,
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
    png = write(f"syncjobs-{args.jobs}", result)
    save_plot(
        png,
        f"{args.jobs} SyncJobs, every minute, {args.slots} slots",
        "seconds from the slot to the run's process start",
        "runs",
        lambda axis: axis.hist(delays, bins=40, color="#e8590c"),
    )
    kubectl("delete", "namespace", space, "--wait=false")


if __name__ == "__main__":
    main()
