"""The Workflow a SyncJob run with `spec.workflow` is: its spec, with the slot in its params.

The run's spec is `spec.workflow.spec` (or a reference to `spec.workflow.workflowTemplateRef`),
with `spec.workflow.params` merged over its params.  Each string among those params, and among
an inline spec's own `params`, is a template rendered once, when the run is made, in the
bounded sandbox of task templates with `slot` (the slot's start, RFC 3339), `job` (the
SyncJob's name) and `fencing_token` (the pipeline lock's, as text): `{day: "{{ slot[:10] }}"}`
runs the slot's day.  Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from treadle.core import templating

SAMPLE = {"slot": "2026-01-01T00:00:00Z", "job": "job", "fencing_token": "0"}
"""What the params are checked against at apply time."""


def context(*, slot: str, job: str, fencing_token: int | None) -> dict[str, str]:
    return {"slot": slot, "job": job, "fencing_token": str(fencing_token or 0)}


def _rendered(value: Any, names: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return templating.render_text(value, names) if "{" in value else value
    if isinstance(value, list):
        return [_rendered(item, names) for item in value]
    if isinstance(value, Mapping):
        return {key: _rendered(item, names) for key, item in value.items()}
    return value


def workflow_spec(run: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The Workflow spec of a run (raises templating.TemplateError for a param that cannot
    render)."""
    params = {key: _rendered(value, names) for key, value in (run.get("params") or {}).items()}
    if run.get("workflowTemplateRef"):
        spec: dict[str, Any] = {"workflowTemplateRef": dict(run["workflowTemplateRef"])}
        if params:
            spec["params"] = params
        return spec
    spec = dict(run.get("spec") or {})
    own = {key: _rendered(value, names) for key, value in (spec.get("params") or {}).items()}
    if own or params:
        spec["params"] = {**own, **params}
    return spec


def problems(run: Mapping[str, Any]) -> list[str]:
    """Params that cannot render (checked with a sample slot), each naming its field."""
    found = []
    inline = run.get("spec")
    for path, params in (
        ("spec.workflow.params", run.get("params")),
        (
            "spec.workflow.spec.params",
            inline.get("params") if isinstance(inline, Mapping) else None,
        ),
    ):
        for key, value in (params if isinstance(params, Mapping) else {}).items():
            try:
                _rendered(value, SAMPLE)
            except templating.TemplateError as error:
                found.append(f"{path}.{key}: {error}")
    return found
