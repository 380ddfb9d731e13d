"""`kubectl treadle logs WF [TASK]`: what task attempts wrote (a command's stdout and stderr, a
python task's prints, logging and traceback, an http task's request and answer), read through
the API server from the operator's log API (an aggregated API: the user's own credentials and
RBAC, `get workflows/log`), as `argo logs` and `kubectl logs` show a pod's."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx2 as httpx
from lightkube import Client

from treadle.api import GROUP
from treadle.api.workflows import ENDED_PHASES
from treadle.plugin import flags, terminal
from treadle.plugin.output import Failure, as_json

LOG_API = "/apis/logs.treadle.dev/v1alpha1"
FOLLOW_POLL_SECONDS = 1.0
NO_LOG_API = (
    "the API server has no log API (APIService v1alpha1.logs.treadle.dev): the operator serves "
    "it when started with --logs-address, as the chart does"
)
LOG_API_DOWN = (
    "the log API does not answer (is the operator running? "
    "kubectl get apiservice v1alpha1.logs.treadle.dev)"
)


def add_commands(commands: Any) -> None:
    logs = flags.command_parser(
        commands, "logs", help="print what a workflow's task attempts wrote"
    )
    logs.add_argument("workflow")
    logs.add_argument("task", nargs="?", help="only this task (default: every task)")
    logs.add_argument("--item", type=int, help="only this forEach child (by index)")
    logs.add_argument("--attempt", type=int, help="only this attempt (1 is the first)")
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="follow: what running attempts wrote, every 2 s, until the workflow ends",
    )
    logs.add_argument("-o", "--output", choices=("text", "json"), default="text")
    logs.set_defaults(handler=print_logs)


def fetch(client: Client, name: str, query: dict[str, str]) -> dict[str, Any]:
    """The log API's answer for one workflow (a WorkflowLog), or a Failure saying why not."""
    path = f"{LOG_API}/namespaces/{client.namespace}/workflowlogs/{name}"
    # lightkube has no call for an aggregated API's path: its HTTP client (the kubeconfig's
    # server, credentials and CA) makes the request.
    http: httpx.Client = client._client._client
    try:
        reply = http.get(path, params=query)
    except httpx.HTTPError as error:
        raise Failure(f"{LOG_API_DOWN}: {error}") from error
    if reply.status_code == 200:
        body: dict[str, Any] = reply.json()
        return body
    message = _message(reply)
    if reply.status_code == 404 and "not found" not in message and "no task" not in message:
        raise Failure(NO_LOG_API)
    if reply.status_code == 503:
        raise Failure(f"{LOG_API_DOWN}: {message}")
    raise Failure(message)


def _message(reply: httpx.Response) -> str:
    try:
        return str(reply.json().get("message") or reply.text)
    except ValueError:
        return reply.text.strip() or f"HTTP {reply.status_code}"


def heading(entry: dict[str, Any]) -> str:
    item = f"[{entry['item']}]" if entry.get("item") is not None else ""
    return f"==> {entry['task']}{item} attempt {entry['attempt']} <=="


def body(entry: dict[str, Any]) -> str:
    if entry.get("note"):
        return f"({entry['note']})\n"
    if entry.get("stored"):
        return str(entry.get("log") or "")
    if entry.get("ended"):
        return "(no log: the attempt wrote nothing, or its log expired)\n"
    return "(not ended yet: its log is kept once it ends)\n"


def render(entries: list[dict[str, Any]], *, headings: bool) -> str:
    parts = []
    for entry in entries:
        text = body(entry)
        parts.append(f"{heading(entry)}\n{text}" if headings else text)
        if headings and not text.endswith("\n"):
            parts.append("\n")
    return "".join(parts)


def print_logs(client: Client, args: argparse.Namespace) -> int:
    query = {
        key: str(value)
        for key, value in (("task", args.task), ("item", args.item), ("attempt", args.attempt))
        if value is not None
    }
    if args.follow:
        return follow(
            lambda: fetch(client, args.workflow, query),
            lambda text: sys.stdout.write(terminal.safe(text)),
        )
    answer = fetch(client, args.workflow, query)
    if args.output == "json":
        print(as_json(answer))
        return 0
    entries = answer.get("attempts") or []
    if not entries:
        print(f"workflow.{GROUP}/{args.workflow}: no attempt has run yet", file=sys.stderr)
        return 0
    one = len(entries) == 1 and args.task is not None
    sys.stdout.write(terminal.safe(render(entries, headings=not one)))
    if answer.get("omitted"):
        print(
            f"... {answer['omitted']} more attempts not shown: name a task, --item or --attempt",
            file=sys.stderr,
        )
    return 0


def follow(
    fetch_once: Callable[[], dict[str, Any]],
    write: Callable[[str], Any],
    poll_seconds: float = FOLLOW_POLL_SECONDS,
) -> int:
    """Prints what attempts write as they write it (a running attempt's copy is refreshed
    every few seconds), each under a heading whenever another attempt wrote last, until the
    workflow has ended and every attempt's log was printed; 0 when it succeeded."""
    shown: dict[tuple[str, int | None, int], str] = {}
    done: set[tuple[str, int | None, int]] = set()
    last: tuple[str, int | None, int] | None = None
    try:
        while True:
            answer = fetch_once()
            entries = answer.get("attempts") or []
            for entry in entries:
                key = (entry["task"], entry.get("item"), entry["attempt"])
                if key in done:
                    continue
                text, before = str(entry.get("log") or ""), shown.get(key, "")
                new = text[len(before) :] if text.startswith(before) else f"[...]\n{text}"
                if entry.get("ended") and not entry.get("stored"):
                    new = body(entry)
                if entry.get("ended"):
                    done.add(key)
                if not new:
                    continue
                if last != key:
                    write(f"{heading(entry)}\n")
                    last = key
                write(new)
                shown[key] = text
                sys.stdout.flush()
            phase = answer.get("phase")
            if phase in (*ENDED_PHASES, "Invalid") and all(e.get("ended") for e in entries):
                return 0 if phase == "Succeeded" else 1
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        return 130
