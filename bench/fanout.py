"""Big fan-out: one workflow with N no-op python children, end to end, on the cluster that
`make run` started (or $KUBECONFIG's, with the operator running).

    .venv/bin/python bench/fanout.py --children 10000 --workers 2 --concurrency 500

Prints and writes bench/results/fanout-<children>.json: seconds from apply to Succeeded,
children per second, and the size of the Workflow object (bytes of its JSON) when it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = str(ROOT / ".venv" / "bin" / "kubectl")


def kubectl(*args: str, stdin: str | None = None) -> str:
    env = dict(os.environ)
    env.setdefault("KUBECONFIG", str(ROOT / ".treadle" / "kubeconfig"))
    return subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True,
                          check=True, env=env).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--namespace", default="bench")
    args = parser.parse_args()
    name = f"fanout-{args.children}"
    subprocess.run([KUBECTL, "create", "namespace", args.namespace], capture_output=True,
                   env={**os.environ, "KUBECONFIG": os.environ.get("KUBECONFIG", str(ROOT / ".treadle" / "kubeconfig"))})
    kubectl("delete", "twf", name, "-n", args.namespace, "--ignore-not-found", "--wait=true")
    workflow = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "concurrency": args.concurrency,
            "workers": {"replicas": args.workers},
            "params": {"n": args.children},
            "tasks": [{"name": "noop", "forEach": "{{ range(params.n) | list }}",
                       "python": {"callable": "time:time"}}],
        },
    }
    started = time.monotonic()
    kubectl("apply", "-n", args.namespace, "-f", "-", stdin=json.dumps(workflow))
    phase = ""
    while phase not in ("Succeeded", "Failed"):
        time.sleep(1)
        phase = kubectl("get", "twf", name, "-n", args.namespace, "-o", "jsonpath={.status.phase}")
    seconds = time.monotonic() - started
    body = kubectl("get", "twf", name, "-n", args.namespace, "-o", "json")
    result = {
        "children": args.children,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "phase": phase,
        "seconds": round(seconds, 1),
        "children_per_second": round(args.children / seconds, 1),
        "object_bytes": len(body.encode()),
        "status_bytes": len(json.dumps(json.loads(body)["status"]).encode()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / f"fanout-{args.children}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
