"""`kubectl treadle get WF` and `kubectl treadle list`: a workflow as a tree of its tasks in DAG
order (redrawn in place with `--watch`), and the workflows of a namespace (or of all) with
their durations, as `argo get`, `argo watch` and `argo list` show them."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import yaml
from lightkube import Client

from treadle.plugin import flags, objects, runs, view
from treadle.plugin.output import as_json, print_table
from treadle.services import kube

OUTPUTS = ("tree", "wide", "json", "yaml")


def add_commands(commands: Any) -> None:
    get = flags.command_parser(commands, "get", help="show a workflow as a tree of its tasks")
    get.add_argument("workflow")
    get.add_argument("-o", "--output", choices=OUTPUTS, default="tree", help="default: tree")
    get.add_argument(
        "-w", "--watch", action="store_true", help="redraw it as it changes, until it has ended"
    )
    get.set_defaults(handler=get_workflow)
    listing = flags.command_parser(commands, "list", help="list workflows, with their durations")
    listing.add_argument(
        "-A", "--all-namespaces", action="store_true", help="across every namespace"
    )
    listing.add_argument("-o", "--output", choices=("table", "json"), default="table")
    listing.set_defaults(handler=list_workflows)


def get_workflow(client: Client, args: argparse.Namespace) -> int:
    if args.watch:
        return runs.watch(client, args.workflow)
    found = objects.get(client, kube.Workflow, "workflow", args.workflow)
    body = dict(found)
    (body.get("metadata") or {}).pop("managedFields", None)
    if args.output == "json":
        print(as_json(body))
    elif args.output == "yaml":
        print(yaml.safe_dump(body, sort_keys=False), end="")
    else:
        colour = sys.stdout.isatty()
        print("\n".join(view.render(body, colour=colour, wide=args.output == "wide")))
    return 0


def duration(status: dict[str, Any], now: datetime) -> str:
    """How long the run took (or has taken so far), as kubectl prints ages: 45s, 3m12s, 2h5m."""
    began = status.get("startedAt")
    if not began:
        return ""
    start = datetime.fromisoformat(str(began).replace("Z", "+00:00"))
    ended = status.get("finishedAt")
    end = datetime.fromisoformat(str(ended).replace("Z", "+00:00")) if ended else now
    seconds = max(0, int((end - start).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60}m"


def list_workflows(client: Client, args: argparse.Namespace) -> int:
    namespace = "*" if args.all_namespaces else client.namespace
    found = sorted(
        (dict(w) for w in client.list(kube.Workflow, namespace=namespace)),
        key=lambda w: (w["metadata"].get("namespace"), w["metadata"]["creationTimestamp"]),
    )
    now = datetime.now(UTC)
    rows = []
    for workflow in found:
        meta, status = workflow["metadata"], workflow.get("status") or {}
        row = [
            meta["name"],
            status.get("phase") or "Pending",
            status.get("progress") or "",
            status.get("startedAt") or "",
            duration(status, now),
            (status.get("message") or "")[:80],
        ]
        rows.append([meta.get("namespace"), *row] if args.all_namespaces else row)
    if args.output == "json":
        print(as_json(rows))
        return 0
    headers = ["NAME", "PHASE", "PROGRESS", "STARTED", "DURATION", "MESSAGE"]
    print_table(headers, rows, empty="No workflows.", namespaced=args.all_namespaces)
    return 0
