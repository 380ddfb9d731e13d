"""CustomResourceDefinitions generated from the models.

Pydantic's JSON schema is not a Kubernetes structural schema as it is (`$ref`, `anyOf` with null,
`const`, numeric `exclusiveMinimum`, `additionalProperties: false`), so `structural` rewrites it.
`python -m treadle.api.crds DIR` writes the YAML; a unit test keeps crds/ equal to the output.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from treadle.api import GROUP, VERSION, pools, syncjobs, workflows

Schema = dict[str, Any]

CATEGORIES = ["treadle"]
_KEPT = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "format",
    "nullable",
}
MAX_NAME_LENGTH = 63


def structural(node: Schema, defs: dict[str, Schema]) -> Schema:
    """One pydantic JSON-schema node as an OpenAPI v3 structural-schema node."""
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {len(options)} types: {options}")
        return structural({**options[0], **{k: v for k, v in node.items() if k != "default"}}, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _KEPT or key.startswith("x-kubernetes-"):
            out[key] = value
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "additionalProperties" and isinstance(value, dict) and value:
            out[key] = structural(value, defs)
    if "properties" in out:
        out["properties"] = {k: structural(v, defs) for k, v in out["properties"].items()}
        out.setdefault("type", "object")
    if isinstance(out.get("items"), dict):
        out["items"] = structural(out["items"], defs)
    if out.get("x-kubernetes-preserve-unknown-fields") and out.get("type") == "object":
        out.pop("additionalProperties", None)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    order = ("type", "description")
    return {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}


def schema_of(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="serialization")
    defs = raw.pop("$defs", {})
    return structural(raw, defs)


def _crd(
    *,
    kind: str,
    plural: str,
    singular: str,
    short_names: list[str],
    description: str,
    spec_model: type[BaseModel],
    status_model: type[BaseModel] | None,
    columns: list[dict[str, Any]],
    scale: dict[str, str] | None = None,
    rules: tuple[dict[str, str], ...] = (),
    refused: tuple[dict[str, Schema], tuple[str, str]] | None = None,
) -> Schema:
    spec_schema = schema_of(spec_model)
    if refused is not None:
        # Fields known only to be refused, with a message that says what to write instead.
        fields, (rule, message) = refused
        spec_schema["properties"].update(fields)
        spec_schema.setdefault("x-kubernetes-validations", []).append(
            {"rule": rule, "message": message}
        )
    status_schema = None if status_model is None else schema_of(status_model)
    root: Schema = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "treadle.dev/v1alpha1"},
            "kind": {"type": "string", "description": kind},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            **({} if status_schema is None else {"status": status_schema}),
        },
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
                "message": f"metadata.name: must be no more than {MAX_NAME_LENGTH} characters "
                "(it is used in label values)",
            },
            *rules,
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "treadle", "app.kubernetes.io/part-of": "treadle"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": short_names,
                "categories": CATEGORIES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": ({} if status_model is None else {"status": {}})
                    | ({"scale": scale} if scale else {}),
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def definitions() -> dict[str, Schema]:
    """Every CRD of the project, by file name."""
    return {
        f"{workflows.PLURAL}.{GROUP}.yaml": _crd(
            kind=workflows.KIND,
            plural=workflows.PLURAL,
            singular=workflows.SINGULAR,
            short_names=workflows.SHORT_NAMES,
            description="A Workflow runs a DAG of tasks on worker pods fed from a Redis stream.",
            spec_model=workflows.WorkflowSpec,
            status_model=workflows.WorkflowStatus,
            columns=workflows.PRINTER_COLUMNS,
            refused=(workflows.ARGO_FIELDS, workflows.NOT_ARGO),
        ),
        f"{workflows.TEMPLATE_PLURAL}.{GROUP}.yaml": _crd(
            kind=workflows.TEMPLATE_KIND,
            plural=workflows.TEMPLATE_PLURAL,
            singular=workflows.TEMPLATE_SINGULAR,
            short_names=workflows.TEMPLATE_SHORT_NAMES,
            description="A WorkflowTemplate holds a reusable Workflow spec, run by a Workflow's "
            "spec.workflowTemplateRef or `kubectl treadle submit`.",
            spec_model=workflows.WorkflowTemplateSpec,
            status_model=None,
            columns=workflows.TEMPLATE_COLUMNS,
            refused=(workflows.ARGO_FIELDS, workflows.NOT_ARGO),
        ),
        f"{syncjobs.PLURAL}.{GROUP}.yaml": _crd(
            kind=syncjobs.KIND,
            plural=syncjobs.PLURAL,
            singular=syncjobs.SINGULAR,
            short_names=syncjobs.SHORT_NAMES,
            description="A SyncJob runs a pod on a cron schedule, guarded by pipeline and table "
            "locks, retrying skipped runs inside their cron slot.",
            spec_model=syncjobs.SyncJobSpec,
            status_model=syncjobs.SyncJobStatus,
            columns=syncjobs.PRINTER_COLUMNS,
        ),
        f"{pools.PLURAL}.{GROUP}.yaml": _crd(
            kind=pools.KIND,
            plural=pools.PLURAL,
            singular=pools.SINGULAR,
            short_names=pools.SHORT_NAMES,
            description="A WorkerPool is a warm, shared set of worker pods (a Deployment the "
            "operator owns and scales on backlog) running the tasks of its namespace's workflows.",
            spec_model=pools.WorkerPoolSpec,
            status_model=pools.WorkerPoolStatus,
            columns=pools.PRINTER_COLUMNS,
            scale=pools.SCALE,
            rules=(pools.NAME_RULE,),
        ),
    }


HEADER = "# Generated from operator/treadle/api by `make crds`; do not edit.\n"


def render(crd: Schema) -> str:
    return HEADER + yaml.safe_dump(crd, sort_keys=False, width=100, allow_unicode=True)


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, crd in definitions().items():
        path = directory / name
        path.write_text(render(crd))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "crds")):
        print(path)
