"""A workflow as the plugin shows it: a header line and its tasks in DAG order, each with its
phase, attempts, duration and error (forEach as counts), exit tasks apart; and `follow`, which
redraws it as it changes until the workflow has ended."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from treadle.api.workflows import ENDED_PHASES
from treadle.core import dags
from treadle.plugin import terminal

SYMBOLS = {
    "Pending": "○",
    "Queued": "◔",
    "Running": "●",
    "Retrying": "↻",
    "Succeeded": "✔",
    "DeadLettered": "✖",
    "Skipped": "⊘",
}
COLOURS = {"Succeeded": "32", "DeadLettered": "31", "Retrying": "33", "Running": "36"}
PHASE_COLOURS = {"Succeeded": "32", "Failed": "31", "Terminated": "31", "Stopped": "33"}
POLL_SECONDS = 1.0


def _seconds(start: str | None, end: str | None) -> str:
    if not start:
        return ""
    try:
        began = datetime.fromisoformat(start.replace("Z", "+00:00"))
        ended = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else None
    except ValueError:
        return ""
    if ended is None:
        return ""
    seconds = (ended - began).total_seconds()  # status times are whole seconds
    return "<1s" if seconds < 1 else f"{seconds:.0f}s"


def _paint(text: str, code: str | None, colour: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if colour and code else text


def order(tasks: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Tasks in DAG order (as the operator runs them); as written when the graph is broken."""
    by_name = {str(task.get("name")): task for task in tasks}
    graph = dags.Dag.from_tasks(
        [(name, task.get("dependsOn") or []) for name, task in by_name.items()]
    )
    if graph.problems():
        return list(tasks)
    return [by_name[name] for name in graph.order]


def counts(entry: Mapping[str, Any], dead: str = "dead-lettered") -> str:
    """A task's forEach counts ("4/10 items, 1 dead-lettered"), or its attempts."""
    if entry.get("items") is not None:
        done, total = entry.get("succeeded") or 0, entry.get("items") or 0
        lost = entry.get("deadLettered") or 0
        return f"{done}/{total} items" + (f", {lost} {dead}" if lost else "")
    count = int(entry.get("attempts") or 0)
    return f"{count} attempt{'s' if count != 1 else ''}" if count else ""


def task_line(
    task: Mapping[str, Any], entry: Mapping[str, Any], colour: bool, wide: bool = False
) -> str:
    phase = str(entry.get("phase") or "Pending")
    detail = []
    if wide:
        action = next((k for k in ("command", "http", "python", "job") if task.get(k)), "")
        detail.append(f"{action:<7} {entry.get('startedAt') or '-':<20}")
    counted = counts(entry)
    if counted:
        detail.append(counted)
    took = _seconds(entry.get("startedAt"), entry.get("finishedAt"))
    if took:
        detail.append(took)
    if phase == "Running" and entry.get("worker"):
        detail.append(f"on {entry['worker']} since {entry.get('attemptStartedAt') or '?'}")
    elif wide and entry.get("worker"):
        detail.append(f"ran on {entry['worker']}")
    if phase == "Queued" and entry.get("waiting"):
        detail.append(f"waiting: {entry['waiting']}")
    if entry.get("reason"):
        detail.append(str(entry["reason"]))
    if entry.get("nextRetryAt") and phase == "Retrying":
        detail.append(f"next at {entry['nextRetryAt']}")
    if entry.get("error") and phase != "Succeeded":
        detail.append(str(entry["error"]) if wide else str(entry["error"])[:120])
    symbol = _paint(SYMBOLS.get(phase, "?"), COLOURS.get(phase), colour)
    name = str(task.get("name"))
    return f"  {symbol} {name:<24} {phase:<13} {'  '.join(detail)}".rstrip()


def render(
    workflow: Mapping[str, Any],
    *,
    colour: bool = False,
    template: Mapping[str, Any] | None = None,
    wide: bool = False,
) -> list[str]:
    """The lines of the workflow's view; `template` is the spec of the WorkflowTemplate it
    runs, for the moment before its status holds the copy its run froze; `wide` adds each
    task's action and start, and its whole error.  Strings others wrote (outputs, errors)
    cannot drive the terminal (plugin/terminal.py)."""
    workflow = terminal.safe_strings(dict(workflow))
    template = terminal.safe_strings(dict(template)) if template is not None else None
    meta = workflow.get("metadata") or {}
    spec = workflow.get("spec") or {}
    status = workflow.get("status") or {}
    template = status.get("templateSpec") or template or {}
    tasks = spec.get("tasks") or template.get("tasks") or []
    exits = spec.get("onExit") or template.get("onExit") or []
    entries = status.get("tasks") or {}
    phase = str(status.get("phase") or "Pending")
    header = (
        f"{meta.get('namespace')}/{meta.get('name')}   "
        f"{_paint(phase, PHASE_COLOURS.get(phase), colour)}   {status.get('progress') or ''}   "
        f"{status.get('message') or ''}"
    )
    lines = [header.rstrip()]
    for task in order(tasks):
        lines.append(task_line(task, entries.get(task.get("name")) or {}, colour, wide))
    if exits:
        lines.append("  on exit:")
        for task in order(exits):
            lines.append("  " + task_line(task, entries.get(task.get("name")) or {}, colour, wide))
    return lines


def ended(workflow: Mapping[str, Any]) -> bool:
    return (workflow.get("status") or {}).get("phase") in (*ENDED_PHASES, "Invalid")


def follow(
    fetch: Callable[[], Mapping[str, Any]],
    out: TextIO = sys.stdout,
    *,
    poll_seconds: float = POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    template: Mapping[str, Any] | None = None,
) -> Mapping[str, Any]:
    """Shows the workflow, again each time it changes, until it has ended; returns it then.
    On a terminal the view is redrawn in place (with colour); elsewhere each change is printed
    below the last, so a CI log reads as a history."""
    terminal = out.isatty()
    shown: list[str] = []
    while True:
        workflow = fetch()
        lines = render(workflow, colour=terminal, template=template)
        if lines != shown:
            if terminal and shown:
                out.write(f"\033[{len(shown)}F\033[J")
            elif shown:
                out.write("\n")
            out.write("\n".join(lines) + "\n")
            out.flush()
            shown = lines
        if ended(workflow):
            return workflow
        sleep(poll_seconds)
