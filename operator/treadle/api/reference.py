"""The field reference of Workflow and SyncJob (docs/reference/*.md), generated from the same
CRD schemas the API server validates with, so every field is documented once, in the models.

    python -m treadle.api.reference docs/reference
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from treadle.api import crds

HEADER = "<!-- Generated from operator/treadle/api by `make crds`; do not edit. -->\n"
BOUNDS = (
    ("minimum", "≥ {}"),
    ("maximum", "≤ {}"),
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("minItems", "≥ {} items"),
    ("maxItems", "≤ {} items"),
    ("pattern", "matches `{}`"),
)


def _type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " \\| ".join(f"`{value}`" for value in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(schema.get('items') or {})}"
    if kind is None:
        return "any JSON" if schema.get("x-kubernetes-preserve-unknown-fields") else "object"
    if kind == "object" and "additionalProperties" in schema:
        return f"map of {_type(schema['additionalProperties'])}"
    return str(kind)


def _notes(schema: dict[str, Any]) -> str:
    found = [text.format(schema[key]) for key, text in BOUNDS if key in schema]
    if "default" in schema:
        found.insert(0, f"default `{schema['default']}`")
    for rule in schema.get("x-kubernetes-validations") or []:
        found.append(rule["message"])
    return "; ".join(found)


def _rows(schema: dict[str, Any], path: str, required: bool) -> Iterator[list[str]]:
    text = " ".join(str(schema.get("description", "")).split())
    yield [f"`{path}`", _type(schema), "yes" if required else "", text, _notes(schema)]
    children = schema.get("properties") or {}
    if schema.get("type") == "array":
        children = (schema.get("items") or {}).get("properties") or {}
        needed = set((schema.get("items") or {}).get("required") or [])
        prefix = f"{path}[]"
    else:
        needed = set(schema.get("required") or [])
        prefix = path
    for name, child in children.items():
        yield from _rows(child, f"{prefix}.{name}", name in needed)


def render(crd: dict[str, Any]) -> str:
    names = crd["spec"]["names"]
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    lines = [
        HEADER,
        f"# {names['kind']} reference",
        "",
        f"`apiVersion: {crd['spec']['group']}/{version['name']}`, `kind: {names['kind']}` "
        f"(short name `{', '.join(names.get('shortNames', []))}`). "
        f"{' '.join(str(schema.get('description', '')).split())}",
        "",
    ]
    for part in [p for p in ("spec", "status") if p in schema["properties"]]:
        lines += [
            f"## {part}",
            "",
            "| field | type | required | description | constraints |",
            "|---|---|---|---|---|",
        ]
        for row in list(_rows(schema["properties"][part], part, False))[1:]:
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        lines.append("")
    return "\n".join(lines)


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for crd in crds.definitions().values():
        path = directory / f"{crd['spec']['names']['singular']}.md"
        path.write_text(render(crd))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/reference")):
        print(path)
