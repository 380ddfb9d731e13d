"""Big fan-out: one workflow with N no-op python children, end to end, on the cluster that
`make run` started (or $KUBECONFIG's, with the operator running).

    .venv/bin/python bench/fanout.py --children 10000 --workers 2 --concurrency 500 [--pool]

Prints and writes bench/results/fanout-<children>.json: seconds from apply to Succeeded,
children per second, and the size of the Workflow object (bytes of its JSON) when it finished;
and .png, children succeeded over time.
"""

from __future__ import annotations

import argparse
import json
import time

from common import kubectl, namespace, save_plot, warm_pool, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--namespace", default="bench")
    parser.add_argument(
        "--pool", action="store_true", help="run on a warm WorkerPool of --workers pods"
    )
    args = parser.parse_args()
    name = f"fanout-{args.children}"
    namespace(args.namespace)
    on = {"workers": {"replicas": args.workers}}
    if args.pool:
        on = {"workerPool": warm_pool(args.namespace, args.workers)}
    kubectl("delete", "twf", name, "-n", args.namespace, "--ignore-not-found", "--wait=true")
    workflow = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "concurrency": args.concurrency,
            **on,
            "params": {"n": args.children},
            "tasks": [
                {
                    "name": "noop",
                    "forEach": "{{ range(params.n) | list }}",
                    "python": {"callable": "time:time"},
                }
            ],
        },
    }
    started = time.monotonic()
    kubectl("apply", "-n", args.namespace, "-f", "-", stdin=json.dumps(workflow))
    phase, timeline = "", []
    while phase not in ("Succeeded", "Failed"):
        time.sleep(0.25)
        found = kubectl("get", "twf", name, "-n", args.namespace, "-o",
                        "jsonpath={.status.phase} {.status.tasks.noop.succeeded}")  # fmt: skip
        phase, _, done = found.partition(" ")
        timeline.append((time.monotonic() - started, int(done or 0)))
    seconds = time.monotonic() - started
    body = kubectl("get", "twf", name, "-n", args.namespace, "-o", "json")
    result = {
        "children": args.children,
        "workers": args.workers,
        "on": "warm WorkerPool" if args.pool else "workers of its own (pod start in the clock)",
        "concurrency": args.concurrency,
        "phase": phase,
        "seconds": round(seconds, 1),
        "children_per_second": round(args.children / seconds, 1),
        "object_bytes": len(body.encode()),
        "status_bytes": len(json.dumps(json.loads(body)["status"]).encode()),
    }
    png = write(f"fanout-{args.children}", result)
    save_plot(
        png,
        f"One workflow, {args.children} forEach children",
        "seconds since apply",
        "children succeeded",
        lambda axis: axis.plot([t for t, _ in timeline], [n for _, n in timeline], color="#2b8a3e"),
    )


if __name__ == "__main__":
    main()
