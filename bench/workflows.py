"""Many small workflows: N workflows of 5 python tasks each (a -> b, c, d -> e), applied at
once, on the cluster `make run` started: on a warm WorkerPool (`--pool N`: N worker pods,
made and ready before the clock starts), or each with its own worker pod (`--pool 0`).

    .venv/bin/python bench/workflows.py --workflows 1000 --pool 2

The workflows are created by one process with `--clients` API requests in flight at once
(default 32), or by that many kubectl processes (`--kubectl`; 1 creates one List, in order, as
a single `kubectl create -f` does), so that the figure is the operator's, not the creating
client's: the creation rate is reported apart. Reports the time from the first create to the
last Succeeded, workflows per minute, the operator's peak RSS (sampled twice a second), and the
API server's write requests (from its own `apiserver_request_total`) per task, split by
resource. Writes bench/results/workflows-<N>[-pool].json and .png (workflows created and
finished over time).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import (
    WORKFLOWS,
    Kind,
    apiserver_writes,
    create_with_requests,
    kubectl,
    namespace,
    operator_pid,
    peak_rss,
    save_plot,
    warm_pool,
    watch_ends,
    write,
)

TASKS_PER_WORKFLOW = 5


def create_with_kubectl(
    _: Kind, space: str, bodies: list[dict[str, Any]], clients: int, created: list[float]
) -> None:
    lists = [
        {"apiVersion": "v1", "kind": "List", "items": bodies[c::clients]} for c in range(clients)
    ]

    def one(body: dict[str, Any]) -> None:
        kubectl("create", "-n", space, "-f", "-", stdin=json.dumps(body))
        created.extend([time.monotonic()] * len(body["items"]))

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, lists))


def workflow(index: int, on: dict[str, Any]) -> dict[str, Any]:
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
            **on,
            "tasks": [
                task("a"),
                task("b", "a"),
                task("c", "a"),
                task("d", "a"),
                task("e", "b", "c", "d"),
            ],
        },
    }


def phases(space: str) -> list[str]:
    out = kubectl("get", "twf", "-n", space, "-o", "jsonpath={.items[*].status.phase}")
    return out.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32, help="create requests in flight at once")
    parser.add_argument(
        "--kubectl", action="store_true", help="create through --clients kubectl processes"
    )
    parser.add_argument(
        "--pool", type=int, default=2, help="workers of a warm WorkerPool (0: a pod per workflow)"
    )
    args = parser.parse_args()
    space = f"bench-small-{int(time.time())}"
    namespace(space)
    on = {"workerPool": warm_pool(space, args.pool)} if args.pool else {}
    stop, peak = peak_rss(operator_pid())
    by_resource = {r: apiserver_writes(r) for r in ("pods|bindings", "workflows", "events", ".*")}
    bodies = [workflow(i, on) for i in range(args.workflows)]
    started = time.monotonic()
    created: list[float] = []
    creating = threading.Thread(
        target=create_with_kubectl if args.kubectl else create_with_requests,
        args=(WORKFLOWS, space, bodies, args.clients, created),
    )
    creating.start()
    timeline: list[tuple[float, int, int]] = []
    ended = watch_ends(WORKFLOWS, space, args.workflows)
    while True:
        timeline.append((time.monotonic() - started, len(created), len(ended)))
        if len(ended) >= args.workflows:
            break
        time.sleep(0.5)
    seconds = max(ended.values()) - started
    creating.join()
    applied = max(created) - started
    stop.set()
    tasks = args.workflows * TASKS_PER_WORKFLOW
    writes = {r: apiserver_writes(r) - before for r, before in by_resource.items()}
    result = {
        "workflows": args.workflows,
        "tasks": tasks,
        "on": f"a warm WorkerPool of {args.pool} pods" if args.pool else "a pod per workflow",
        "creating_client": f"{args.clients} kubectl processes"
        if args.kubectl
        else f"one process, {args.clients} create requests in flight",
        "created_per_minute": round(args.workflows / applied * 60, 1),
        "succeeded": sum(1 for p in phases(space) if p == "Succeeded"),
        "create_seconds": round(applied, 1),
        "seconds": round(seconds, 1),
        "workflows_per_minute": round(args.workflows / seconds * 60, 1),
        "operator_peak_rss_mib": round(peak[0] / 2**20, 1),
        "apiserver_writes_per_task": round(writes[".*"] / tasks, 2),
        "apiserver_writes": {
            "all": writes[".*"],
            "pods and bindings": writes["pods|bindings"],
            "workflows (incl. status)": writes["workflows"],
            "events": writes["events"],
        },
    }
    png = write(f"workflows-{args.workflows}{'-pool' if args.pool else ''}", result)

    def draw(axis: Any) -> None:
        moments = [t for t, _, _ in timeline]
        axis.plot(moments, [n for _, n, _ in timeline], color="#adb5bd", label="created")
        axis.plot(moments, [n for _, _, n in timeline], color="#1c7ed6", label="finished")
        axis.legend()

    save_plot(
        png,
        f"{args.workflows} workflows x {TASKS_PER_WORKFLOW} tasks, {result['on']}",
        "seconds since the first create",
        "workflows",
        draw,
    )
    kubectl("delete", "namespace", space, "--wait=false")


if __name__ == "__main__":
    main()
