"""Dependency latency: a chain of N tasks; for each link, the time from a task's end to its
successor's start, p50/p95/p99, end to end on the cluster `make run` started.

    .venv/bin/python bench/latency.py --tasks 500

Each task records its own start and end (wall clock, on this machine: the local node agent runs
worker pods here) in a side-effect log. Prints a table; writes bench/results/latency-<N>.json
and .png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import kubectl, namespace, percentile, save_plot, warm_pool, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--namespace", default="bench")
    parser.add_argument("--pool", action="store_true", help="run on a warm WorkerPool")
    args = parser.parse_args()
    name = f"chain-{args.tasks}"
    log = Path(tempfile.mkdtemp(prefix="treadle-latency-")) / "links.log"
    script = 'echo "start {i} $(date +%s.%N)" >> {log}; echo "end {i} $(date +%s.%N)" >> {log}'
    tasks = [
        {"name": f"t{i}", "command": {"args": ["sh", "-c", script.format(i=i, log=log)]},
         **({"dependsOn": [f"t{i - 1}"]} if i else {})}
        for i in range(args.tasks)
    ]  # fmt: skip
    namespace(args.namespace)
    on = {"workerPool": warm_pool(args.namespace, 1)} if args.pool else {}
    body = {"apiVersion": "treadle.dev/v1alpha1", "kind": "Workflow",
            "metadata": {"name": name}, "spec": {"tasks": tasks, **on}}  # fmt: skip
    kubectl("delete", "twf", name, "-n", args.namespace, "--ignore-not-found", "--wait=true")
    kubectl("apply", "-n", args.namespace, "-f", "-", stdin=json.dumps(body))
    phase = ""
    while phase not in ("Succeeded", "Failed"):
        time.sleep(1)
        phase = kubectl("get", "twf", name, "-n", args.namespace, "-o", "jsonpath={.status.phase}")
    marks: dict[tuple[str, int], float] = {}
    for line in log.read_text().splitlines():
        kind, index, moment = line.split()
        marks.setdefault((kind, int(index)), float(moment))
    gaps = [marks[("start", i)] - marks[("end", i - 1)] for i in range(1, args.tasks)]
    result = {
        "tasks": args.tasks,
        "phase": phase,
        "link_seconds": {
            "p50": round(percentile(gaps, 0.50), 3),
            "p95": round(percentile(gaps, 0.95), 3),
            "p99": round(percentile(gaps, 0.99), 3),
            "mean": round(statistics.fmean(gaps), 3),
        },
    }
    png = write(f"latency-{args.tasks}", result)
    save_plot(
        png,
        f"Dependency latency, {args.tasks}-task chain",
        "seconds from a task's end to its successor's start",
        "links",
        lambda axis: axis.hist(gaps, bins=40, color="#2b8a3e"),
    )


if __name__ == "__main__":
    main()
