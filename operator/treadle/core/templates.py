"""Workflows that run a WorkflowTemplate (`spec.workflowTemplateRef`): the spec they run.

The template's spec is frozen into the workflow's status when its run is admitted
(`status.templateSpec`), so an edit of the template changes no run under way; the spec that runs
is that copy with the workflow's own fields in place of the template's, and its `params` merged
key by key over the template's.  A parameter the template does not declare is refused: a typo
in `-p day=...` must not run the template with its default silently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

TEMPLATE_SPEC_LIMIT_BYTES = 96 * 1024
"""The largest template spec (as JSON) a run freezes into its status (which stays under 256
KiB: SPEC, Limits and bad input)."""
REF = "workflowTemplateRef"
OWN_ONLY = ("tasks", "onExit")
"""Fields only the template sets."""


def ref_name(spec: Mapping[str, Any]) -> str | None:
    """The template a workflow spec (as applied) names, or None."""
    ref = spec.get(REF)
    if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
        return None
    return str(ref["name"])


def effective(spec: Mapping[str, Any], template: Mapping[str, Any]) -> dict[str, Any]:
    """The spec a workflow runs: the template's, with the workflow's fields in its place and
    the workflow's params merged over the template's."""
    merged = {key: value for key, value in template.items() if key != REF}
    for key, value in spec.items():
        if key not in (REF, "params", *OWN_ONLY):
            merged[key] = value
    own, given = template.get("params"), spec.get("params")
    if isinstance(own, Mapping) or isinstance(given, Mapping):
        merged["params"] = {
            **(dict(own) if isinstance(own, Mapping) else {}),
            **(dict(given) if isinstance(given, Mapping) else {}),
        }
    return merged


def problems(spec: Mapping[str, Any], template: Mapping[str, Any] | None, name: str) -> list[str]:
    """Why a workflow cannot run template `name` (None: there is no such template)."""
    if template is None:
        return [f"spec.{REF}.name: WorkflowTemplate {name!r} does not exist in this namespace"]
    found = []
    if REF in template:
        found.append(f"spec.{REF}: WorkflowTemplate {name!r} refers to another template")
    size = len(json.dumps(template, separators=(",", ":")))
    if size > TEMPLATE_SPEC_LIMIT_BYTES:
        found.append(
            f"spec.{REF}: WorkflowTemplate {name!r} is {size // 1024} KiB, more than the "
            f"{TEMPLATE_SPEC_LIMIT_BYTES // 1024} KiB a run can keep of it"
        )
    for field in OWN_ONLY:
        if spec.get(field):
            found.append(f"spec.{field}: comes from WorkflowTemplate {name!r} (leave it unset)")
    found += unknown_params(spec.get("params"), template.get("params"), name)
    return found


def unknown_params(given: Any, declared: Any, name: str) -> list[str]:
    """Each parameter `given` that the template does not declare."""
    if not isinstance(given, Mapping):
        return []
    known = sorted(declared) if isinstance(declared, Mapping) else []
    shown = ", ".join(known) if known else "none"
    return [
        f"spec.params.{key}: WorkflowTemplate {name!r} has no parameter {key!r} (its "
        f"parameters: {shown})"
        for key in given
        if key not in known
    ]
