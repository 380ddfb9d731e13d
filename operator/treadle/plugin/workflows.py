"""`kubectl treadle dlq list` and `kubectl treadle retry`: dead letters and manual retry.

Dead letters are read from the workflows' status (the record of truth).  A retry sets the
`treadle.dev/retry` annotation; the operator re-queues the dead-lettered work, writes status,
and removes the annotation, which is how the plugin knows the retry was carried out.
"""

from __future__ import annotations

import argparse
from typing import Any

from lightkube import Client

from treadle.api import RETRY_ANNOTATION
from treadle.plugin import flags, objects
from treadle.plugin.output import Failure, as_json, print_table
from treadle.services import kube


def add_commands(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="dead-lettered tasks")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    listing = flags.command_parser(
        dlq_commands, "list", help="list dead-lettered tasks and children"
    )
    listing.add_argument("workflow", nargs="?", help="only this workflow")
    listing.add_argument("-A", "--all-namespaces", action="store_true")
    listing.add_argument("-o", "--output", choices=("table", "json"), default="table")
    listing.set_defaults(handler=dlq_list)

    retry = flags.command_parser(
        commands,
        "retry",
        help="re-queue a workflow's dead-lettered tasks (a Failed workflow runs again)",
    )
    retry.add_argument("workflow")
    retry.add_argument("--task", help="only this task (default: every dead-lettered task)")
    retry.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the operator (0: none)"
    )
    retry.set_defaults(handler=retry_workflow)


def _get(client: Client, name: str) -> Any:
    return objects.get(client, kube.Workflow, "workflow", name)


def dead_letters(workflow: Any) -> list[dict[str, Any]]:
    status = workflow.get("status") or {}
    meta = workflow["metadata"]
    return [
        {"namespace": meta["namespace"], "workflow": meta["name"], **letter}
        for letter in status.get("deadLetters") or []
    ]


def dlq_list(client: Client, args: argparse.Namespace) -> int:
    if args.workflow:
        found = [_get(client, args.workflow)]
    else:
        namespace = "*" if args.all_namespaces else None
        found = list(client.list(kube.Workflow, namespace=namespace))
    letters = [letter for workflow in found for letter in dead_letters(workflow)]
    if args.output == "json":
        print(as_json(letters))
        return 0
    rows = [
        [
            *([letter["namespace"]] if args.all_namespaces else []),
            letter["workflow"],
            letter["task"],
            letter.get("item", ""),
            letter["attempts"],
            letter["at"],
            letter["error"],
        ]
        for letter in letters
    ]
    headers = ["WORKFLOW", "TASK", "ITEM", "ATTEMPTS", "DEAD-LETTERED", "ERROR"]
    print_table(headers, rows, empty="No dead letters.", namespaced=args.all_namespaces)
    return 0


def retry_workflow(client: Client, args: argparse.Namespace) -> int:
    workflow = _get(client, args.workflow)
    letters = dead_letters(workflow)
    if args.task is not None:
        template = (workflow.get("status") or {}).get("templateSpec") or {}
        tasks = (workflow.get("spec") or {}).get("tasks") or template.get("tasks") or []
        if args.task not in {task["name"] for task in tasks}:
            raise Failure(f"workflow {args.workflow!r} has no task {args.task!r}")
        letters = [letter for letter in letters if letter["task"] == args.task]
    if not letters:
        what = f"task {args.task!r} of " if args.task else ""
        raise Failure(f"{what}workflow {args.workflow!r} has nothing dead-lettered")
    target = args.task or "all"
    count = len(letters)
    current = objects.ask(
        client, kube.Workflow, "workflow", args.workflow, RETRY_ANNOTATION, target, args.timeout
    )
    if current is None:
        print(f"workflow {args.workflow}: retry of {target} requested ({count} dead letter(s))")
        return 0
    status = current.get("status") or {}
    print(
        f"workflow {args.workflow}: re-queued {count} dead letter(s); "
        f"phase {status.get('phase')}, progress {status.get('progress')}"
    )
    return 0
