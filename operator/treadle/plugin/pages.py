"""What `kubectl treadle ui` shows, as plain data for its page: a workflow as a graph of its
tasks (nodes with their phase and counts, edges from each task to those depending on it, exit
tasks apart), list rows of workflows and sync jobs, and a sync job's status rows.  The page
only lays the graph out (dagre) and draws it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from treadle.plugin import listing, syncjobs, view


def _node(task: Mapping[str, Any], entry: Mapping[str, Any], *, exit_task: bool) -> dict[str, Any]:
    action = next((k for k in ("command", "http", "python") if task.get(k)), "")
    return {
        "id": str(task.get("name")),
        "phase": str(entry.get("phase") or "Pending"),
        "detail": view.counts(entry, dead="dead"),
        "action": action,
        "forEach": task.get("forEach") is not None,
        "exit": exit_task,
        "status": dict(entry),
        "spec": dict(task),
    }


def graph(workflow: Mapping[str, Any]) -> dict[str, Any]:
    """The workflow's tasks as nodes in DAG order and its dependencies as edges
    ([from, to]: `to` depends on `from`); exit tasks are nodes marked `exit`."""
    spec = workflow.get("spec") or {}
    status = workflow.get("status") or {}
    template = status.get("templateSpec") or {}
    tasks = spec.get("tasks") or template.get("tasks") or []
    exits = spec.get("onExit") or template.get("onExit") or []
    entries = status.get("tasks") or {}
    nodes, edges = [], []
    for group, exit_task in ((tasks, False), (exits, True)):
        names = {str(t.get("name")) for t in group}
        for task in view.order(group):
            name = str(task.get("name"))
            nodes.append(_node(task, entries.get(name) or {}, exit_task=exit_task))
            edges += [[str(d), name] for d in task.get("dependsOn") or [] if str(d) in names]
    return {"nodes": nodes, "edges": edges}


def workflow_row(workflow: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    meta, status = workflow.get("metadata") or {}, workflow.get("status") or {}
    return {
        "kind": "Workflow",
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "phase": status.get("phase") or "Pending",
        "progress": status.get("progress") or "",
        "started": status.get("startedAt") or "",
        "duration": listing.duration(status, now or datetime.now(UTC)),
        "message": (status.get("message") or "")[:200],
        "created": meta.get("creationTimestamp"),
    }


def syncjob_row(job: Mapping[str, Any]) -> dict[str, Any]:
    meta, spec, status = job.get("metadata") or {}, job.get("spec") or {}, job.get("status") or {}
    degraded = any(
        c.get("type") == "Degraded" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return {
        "kind": "SyncJob",
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "schedule": spec.get("schedule"),
        "suspended": bool(spec.get("suspend")),
        "lastOutcome": status.get("lastOutcome") or "",
        "lastSuccess": status.get("lastSuccessfulTime") or "",
        "next": status.get("nextScheduleTime") or "",
        "running": len(status.get("activeRuns") or []),
        "degraded": degraded,
        "created": meta.get("creationTimestamp"),
    }


def syncjob_page(
    job: Mapping[str, Any], runs: list[Mapping[str, Any]], locks: list[dict[str, Any]]
) -> dict[str, Any]:
    """A sync job's status rows (as `kubectl treadle sync status`), its runs newest first, its
    locks with their holders, its slots and its backfill."""
    status = job.get("status") or {}
    return {
        "job": without_managed_fields(job),
        "rows": [[label, value] for label, value in syncjobs.status_rows(job)],
        "activeRuns": status.get("activeRuns") or [],
        "succeededSlots": status.get("succeededSlots") or "",
        "backfill": status.get("backfill"),
        "locks": locks,
        "runs": sorted(
            (_run_row(run) for run in runs), key=lambda r: str(r["created"]), reverse=True
        ),
    }


def _run_row(run: Mapping[str, Any]) -> dict[str, Any]:
    meta, status = run.get("metadata") or {}, run.get("status") or {}
    annotations = meta.get("annotations") or {}
    return {
        "kind": run.get("kind"),
        "name": meta.get("name"),
        "phase": status.get("phase") or "Pending",
        "slot": annotations.get("treadle.dev/slot", ""),
        "created": meta.get("creationTimestamp"),
    }


def without_managed_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    found = dict(body)
    meta = dict(found.get("metadata") or {})
    meta.pop("managedFields", None)
    found["metadata"] = meta
    return found
