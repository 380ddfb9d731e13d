"""Many small workflows: N workflows of 5 python tasks each (a -> b, c, d -> e), applied at
once, on the cluster `make run` started; each workflow has its own worker pod.

    .venv/bin/python bench/workflows.py --workflows 1000

The workflows are created by `--clients` kubectl processes side by side (default 8; 1 creates
one List, in order, as a single `kubectl create -f` does). Reports the time from the first
apply to the last Succeeded, workflows per minute, the operator's peak RSS (sampled twice a
second), and the API server's write requests (from its own `apiserver_request_total`) per task,
split by resource. Writes bench/results/workflows-<N>.json and .png (workflows finished over
time).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from common import apiserver_writes, kubectl, namespace, operator_pid, rss_bytes, save_plot, write

TASKS_PER_WORKFLOW = 5


def workflow(index: int) -> dict[str, object]:
    def task(name: str, *after: str) -> dict[str, object]:
        return {
            "name": name,
            "python": {"callable": "time:time"},
            **({"dependsOn": list(after)} if after else {}),
        }

    return {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": f"small-{index:04d}"},
        "spec": {
            "tasks": [
                task("a"),
                task("b", "a"),
                task("c", "a"),
                task("d", "a"),
                task("e", "b", "c", "d"),
            ]
        },
    }


def phases(space: str) -> list[str]:
    out = kubectl("get", "twf", "-n", space, "-o", "jsonpath={.items[*].status.phase}")
    return out.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument(
        "--clients",
        type=int,
        default=8,
        help="kubectl processes creating the workflows side by side (1: one List, in order)",
    )
    args = parser.parse_args()
    space = f"bench-small-{int(time.time())}"
    namespace(space)
    pid = operator_pid()
    peak = rss_bytes(pid)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.5):
            peak = max(peak, rss_bytes(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    by_resource = {r: apiserver_writes(r) for r in ("pods|bindings", "workflows", "events", ".*")}
    lists = [
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [workflow(i) for i in range(client, args.workflows, args.clients)],
        }
        for client in range(args.clients)
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(args.clients) as clients:
        list(
            clients.map(
                lambda body: kubectl("create", "-n", space, "-f", "-", stdin=body),
                map(json.dumps, lists),
            )
        )
    applied = time.monotonic() - started
    timeline: list[tuple[float, int]] = []
    while True:
        found = phases(space)
        finished = sum(1 for p in found if p in ("Succeeded", "Failed"))
        timeline.append((time.monotonic() - started, finished))
        if finished >= args.workflows:
            break
        time.sleep(2)
    seconds = time.monotonic() - started
    stop.set()
    sampler.join()
    tasks = args.workflows * TASKS_PER_WORKFLOW
    writes = {r: apiserver_writes(r) - before for r, before in by_resource.items()}
    result = {
        "workflows": args.workflows,
        "tasks": tasks,
        "kubectl_clients": args.clients,
        "succeeded": sum(1 for p in phases(space) if p == "Succeeded"),
        "apply_seconds": round(applied, 1),
        "seconds": round(seconds, 1),
        "workflows_per_minute": round(args.workflows / seconds * 60, 1),
        "operator_peak_rss_mib": round(peak / 2**20, 1),
        "apiserver_writes_per_task": round(writes[".*"] / tasks, 2),
        "apiserver_writes": {
            "all": writes[".*"],
            "pods and bindings": writes["pods|bindings"],
            "workflows (incl. status)": writes["workflows"],
            "events": writes["events"],
        },
    }
    png = write(f"workflows-{args.workflows}", result)
    save_plot(
        png,
        f"{args.workflows} workflows x {TASKS_PER_WORKFLOW} tasks",
        "seconds since apply",
        "workflows finished",
        lambda axis: axis.plot([t for t, _ in timeline], [n for _, n in timeline], color="#1c7ed6"),
    )
    kubectl("delete", "namespace", space, "--wait=false")


if __name__ == "__main__":
    main()
