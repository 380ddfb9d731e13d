"""A hostile tenant beside an ordinary one, on the cluster `make run` started: the operator's
peak memory, how long its health probe waits meanwhile, and whether the ordinary tenant's
workflow is slowed (issue #31).

    make run
    .venv/bin/python bench/hostile.py [--workflows 10] [--tasks 100]

What the hostile tenant does, at once:
- applies a Workflow padded past 1 MiB that names a Secret (refused, not run);
- runs workflows whose every task renders a costly template (`urlize` over 60 KB, several
  times: the bound per render and per engine call is what keeps the loop free);
- runs tasks printing what status cannot hold (a lone surrogate, JSON 300 and 5,000 deep);
- writes junk into its pool's results stream, replaces the stream by a string and deletes it
  (with the operator's Redis URL here; a task has its pool's user, with the same rights on it).

Writes bench/results/hostile.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
import urllib.request
from typing import Any

import redis
from common import (
    STATE,
    kubectl,
    namespace,
    operator_pid,
    peak_rss,
    percentile,
    write,
)

SPACE = "bench-hostile"
VICTIM_SPACE = "bench-victim"
"""The ordinary tenant's namespace."""
COSTLY = "{{ " + " + ".join(["(params.s[:10000] | urlize | length)"] * 6) + " }}"
"""About 40 ms of CPU per render here, just under every per-render bound."""


def health_address() -> str:
    health, _metrics = (STATE / "run" / "operator.ports").read_text().split()[:2]
    return f"http://127.0.0.1:{health}/healthz"


def probe(url: str) -> tuple[threading.Event, list[float]]:
    """Asks the operator's health endpoint every 100 ms; the latencies, in seconds."""
    stop, latencies = threading.Event(), []

    def ask() -> None:
        while not stop.wait(0.1):
            started = time.monotonic()
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=30).read()
            latencies.append(time.monotonic() - started)

    threading.Thread(target=ask, daemon=True).start()
    return stop, latencies


def workflow(name: str, spec: dict[str, Any]) -> str:
    body = {"apiVersion": "treadle.dev/v1alpha1", "kind": "Workflow",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip
    return json.dumps(body)


def costly(name: str, tasks: int, template: str = COSTLY) -> str:
    steps = [{"name": f"t{i}", "command": {"args": ["echo", template]}} for i in range(tasks)]
    return workflow(name, {"params": {"s": "see http://x.test/a " * 3000}, "concurrency": 50,
                           "tasks": steps, "workers": {"replicas": 1}})  # fmt: skip


def printing(name: str) -> str:
    prints = {
        "surrogate": 'printf \'{"a": "\\\\ud800"}\'',
        "deep300": "python3 -c \"print('[' * 300 + ']' * 300)\"",
        "deep5000": "python3 -c \"print('[' * 5000 + ']' * 5000)\"",
    }
    tasks = [{"name": key, "command": {"args": ["sh", "-c", text]}} for key, text in prints.items()]
    return workflow(name, {"tasks": tasks, "workers": {"replicas": 1}})


def ordinary(name: str) -> str:
    tasks = [{"name": "a", "command": {"args": ["echo", "1"]}}]
    tasks += [
        {"name": f"b{i}", "dependsOn": ["a"], "command": {"args": ["true"]}} for i in range(5)
    ]
    return workflow(name, {"tasks": tasks, "workers": {"replicas": 1}})


def padded() -> str:
    spec: dict[str, Any] = {
        "params": {f"pad{i}": "x" * 60_000 for i in range(20)},
        "tasks": [{"name": "a", "command": {"args": ["sh", "-c", "echo $V"]}}],
        "workers": {
            "env": [{"name": "V", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}}]
        },
    }
    return workflow("padded", spec)


def run_seconds(space: str, name: str) -> float:
    """From a workflow's creation to its end, as its object says."""
    from datetime import datetime

    body = json.loads(kubectl("get", "twf", name, "-n", space, "-o", "json"))
    made = datetime.fromisoformat(body["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(body["status"]["finishedAt"].replace("Z", "+00:00"))
    return (ended - made).total_seconds()


def phase(name: str) -> str:
    space = VICTIM_SPACE if name == "victim" else SPACE
    return kubectl("get", "twf", name, "-n", space, "-o", "jsonpath={.status.phase}", check=False)


def wreck_results(uid: str) -> list[str]:
    url = ""
    for line in (STATE / "redis" / "redis.env").read_text().splitlines():
        if line.startswith("TREADLE_REDIS_URL="):
            url = line.split("=", 1)[1].strip().strip("'\"")
    client = redis.Redis.from_url(url)
    stream = f"treadle:pool:wf-{uid}:results"
    done = []
    client.xadd(stream, {"result": "[" * 100_000})
    client.xadd(stream, {"result": b"\xed\xa0\x80"})
    done.append("junk entries")
    client.delete(stream)
    client.set(stream, "not a stream")
    done.append("replaced by a string")
    time.sleep(3)
    client.delete(stream)
    done.append("deleted")
    return done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workflows", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument(
        "--benign", action="store_true",
        help="the same load with cheap templates and nothing hostile: the baseline",
    )  # fmt: skip
    args = parser.parse_args()
    template = "{{ params.s | length }}" if args.benign else COSTLY
    for space in (SPACE, VICTIM_SPACE):
        namespace(space)
        kubectl("delete", "twf", "--all", "-n", space, "--wait=true", check=False)
    pid = operator_pid()
    stop_rss, peak = peak_rss(pid)
    stop_probe, latencies = probe(health_address())
    started = time.monotonic()
    refused = "" if args.benign else subprocess_create(padded())
    for index in range(args.workflows):
        body = costly(f"costly-{index}", args.tasks, template)
        kubectl("apply", "-n", SPACE, "-f", "-", stdin=body)
    kubectl("apply", "-n", SPACE, "-f", "-", stdin=printing("printing"))
    kubectl("apply", "-n", VICTIM_SPACE, "-f", "-", stdin=ordinary("victim"))
    uid = kubectl("get", "twf", "printing", "-n", SPACE, "-o", "jsonpath={.metadata.uid}")
    wrecked = [] if args.benign else wreck_results(uid)
    kubectl("wait", "twf/victim", "-n", VICTIM_SPACE, "--for=condition=Ready", "--timeout=600s")
    victim_seconds = run_seconds(VICTIM_SPACE, "victim")
    names = [f"costly-{i}" for i in range(args.workflows)] + ["printing"]
    for name in names:
        kubectl("wait", f"twf/{name}", "-n", SPACE, "--for=jsonpath={.status.finishedAt}",
                "--timeout=900s", check=False)  # fmt: skip
    total_seconds = time.monotonic() - started
    stop_probe.set()
    stop_rss.set()
    tasks = json.loads(kubectl("get", "twf", "printing", "-n", SPACE, "-o", "json"))
    outputs = {
        name: (entry.get("phase"), str(entry.get("output") or entry.get("error"))[:80])
        for name, entry in (tasks["status"].get("tasks") or {}).items()
    }
    result = {
        "benchmark": "hostile" + (" (benign baseline)" if args.benign else ""),
        "workflows": args.workflows,
        "tasks_each": args.tasks,
        "padded_manifest": refused,
        "results_stream": wrecked,
        "printing_tasks": outputs,
        "phases": {name: phase(name) for name in [*names, "victim"]},
        "victim_seconds": round(victim_seconds, 1),
        "all_seconds": round(total_seconds, 1),
        "operator_peak_rss_mib": round(peak[0] / 2**20),
        "healthz_seconds": {
            "p50": round(percentile(latencies, 0.5), 4),
            "p99": round(percentile(latencies, 0.99), 4),
            "max": round(max(latencies), 4),
            "samples": len(latencies),
        },
    }
    write("hostile-baseline" if args.benign else "hostile", result)


def subprocess_create(manifest: str) -> str:
    import subprocess

    from common import KUBECTL, env

    answer = subprocess.run(
        [KUBECTL, "create", "-n", SPACE, "-f", "-"], input=manifest, capture_output=True,
        text=True, env=env(),
    )  # fmt: skip
    return (answer.stderr or answer.stdout).strip()[:300]


if __name__ == "__main__":
    main()
