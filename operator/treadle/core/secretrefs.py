"""The Secrets a Workflow, SyncJob or WorkerPool spec makes Treadle read, each with the field
that names it (the webhook asks whether the applying user may `get` each one).  Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from treadle.api import pools as pools_api
from treadle.api import workflows
from treadle.core import actions, podspecs


def under(problem: str, prefix: str) -> str:
    return prefix + problem.removeprefix("spec.") if problem.startswith("spec.") else problem


def secrets_named(kind: str, spec: Any) -> list[tuple[str, str]]:
    """The Secrets a Workflow or SyncJob spec makes Treadle read for it, each with the field
    that names it: the webhook asks whether the applying user may `get` each one."""
    found: list[tuple[str, str]] = []
    if not isinstance(spec, Mapping):
        return found
    if kind == pools_api.KIND:
        named = spec.get("secrets")
        return [
            (name, f"spec.secrets[{index}]")
            for index, name in enumerate(named if isinstance(named, list) else [])
            if isinstance(name, str)
        ]
    if kind == "SyncJob":
        template = spec.get("template")
        pod = template.get("spec") if isinstance(template, Mapping) else None
        found += [(name, "spec.template.spec") for name in sorted(podspecs.secrets_in_pod(pod))]
        run = spec.get("workflow")
        inline = run.get("spec") if isinstance(run, Mapping) else None
        found += [
            (name, under(path, "spec.workflow.spec."))
            for name, path in secrets_named(workflows.KIND, inline)
        ]
        return found
    workers = spec.get("workers")
    if isinstance(workers, Mapping):
        found += [
            (n, "spec.workers.env") for n in sorted(podspecs.secrets_in_env(workers.get("env")))
        ]
    for field in ("tasks", "onExit"):
        tasks = spec.get(field)
        for index, task in enumerate(tasks if isinstance(tasks, list) else []):
            found += actions.secrets_named(task, f"spec.{field}[{index}]")
    return found


def workflow_secrets(spec: workflows.WorkflowSpec) -> dict[str, list[tuple[str, str]]]:
    """The Secrets each task reads (Secret, field), for the check against its pool's."""
    found: dict[str, list[tuple[str, str]]] = {}
    raw = spec.model_dump(mode="json", exclude_none=True, by_alias=True)
    for field in ("tasks", "onExit"):
        for index, task in enumerate(raw.get(field) or []):
            found[task["name"]] = list(actions.secrets_named(task, f"spec.{field}[{index}]"))
    return found
