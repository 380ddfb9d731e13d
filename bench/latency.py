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
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = str(ROOT / ".venv" / "bin" / "kubectl")


def kubectl(*args: str, stdin: str | None = None) -> str:
    env = {**os.environ}
    env.setdefault("KUBECONFIG", str(ROOT / ".treadle" / "kubeconfig"))
    return subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True,
                          check=True, env=env).stdout  # fmt: skip


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--namespace", default="bench")
    args = parser.parse_args()
    name = f"chain-{args.tasks}"
    log = Path(tempfile.mkdtemp(prefix="treadle-latency-")) / "links.log"
    script = 'echo "start {i} $(date +%s.%N)" >> {log}; echo "end {i} $(date +%s.%N)" >> {log}'
    tasks = [
        {"name": f"t{i}", "command": {"args": ["sh", "-c", script.format(i=i, log=log)]},
         **({"dependsOn": [f"t{i - 1}"]} if i else {})}
        for i in range(args.tasks)
    ]  # fmt: skip
    body = {"apiVersion": "treadle.dev/v1alpha1", "kind": "Workflow",
            "metadata": {"name": name}, "spec": {"tasks": tasks}}  # fmt: skip
    subprocess.run([KUBECTL, "create", "namespace", args.namespace], capture_output=True)
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
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / f"latency-{args.tasks}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.hist(gaps, bins=40, color="#2b8a3e")
    axis.set_xlabel("seconds from a task's end to its successor's start")
    axis.set_ylabel("links")
    axis.set_title(f"Dependency latency, {args.tasks}-task chain")
    figure.tight_layout()
    figure.savefig(out.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
