"""The CRD YAML under crds/ is what the models generate, and it is a valid structural schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from treadle.api import crds, policies, reference

REPO = Path(__file__).resolve().parents[3]
CRD_DIR = REPO / "crds"


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, schema)]
    for name, child in (schema.get("properties") or {}).items():
        nodes += walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        nodes += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        nodes += walk(schema["additionalProperties"], f"{path}{{}}")
    return nodes


@pytest.mark.parametrize("name", sorted(crds.definitions()))
def test_crd_files_match_the_models(name: str) -> None:
    assert (CRD_DIR / name).read_text() == crds.render(crds.definitions()[name]), (
        f"crds/{name} is out of date: run `make crds`"
    )


@pytest.mark.parametrize("name", sorted(crds.definitions()))
def test_crd_schema_is_structural(name: str) -> None:
    root = crds.definitions()[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(root):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "const", "title", "default"} & node.keys(), (
            path
        )
        assert "type" in node or any(
            node.get(k)
            for k in ("x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string")
        ), path
        assert node.get("additionalProperties") is not True, path


@pytest.mark.parametrize("name", sorted(crds.definitions()))
def test_every_spec_field_is_described_for_kubectl_explain(name: str) -> None:
    root = crds.definitions()[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = root["properties"]["spec"]
    missing = [
        path
        for path, node in walk(spec, ".spec")[1:]
        if not node.get("description") and not path.endswith("[]")
    ]
    assert missing == []


def test_workflow_crd_names_match_the_spec() -> None:
    crd = yaml.safe_load((CRD_DIR / "workflows.treadle.dev.yaml").read_text())
    names = crd["spec"]["names"]
    assert (names["kind"], names["shortNames"], names["categories"]) == (
        "Workflow",
        ["twf"],
        ["treadle"],
    )
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Phase", "Progress", "Age", "Message"]


def test_syncjob_crd_names_match_the_spec() -> None:
    crd = yaml.safe_load((CRD_DIR / "syncjobs.treadle.dev.yaml").read_text())
    names = crd["spec"]["names"]
    assert (names["kind"], names["shortNames"], names["categories"]) == (
        "SyncJob",
        ["sj"],
        ["treadle"],
    )


def test_tasks_are_a_map_list_keyed_by_name_with_one_action_rule() -> None:
    crd = crds.definitions()["workflows.treadle.dev.yaml"]
    tasks = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["tasks"]
    assert tasks["x-kubernetes-list-type"] == "map"
    assert tasks["x-kubernetes-list-map-keys"] == ["name"]
    rules = [v["rule"] for v in tasks["items"]["x-kubernetes-validations"]]
    assert any("exists_one" in rule for rule in rules)


@pytest.mark.parametrize("name", sorted(crds.definitions()))
def test_the_field_reference_in_docs_matches_the_models(name: str) -> None:
    crd = crds.definitions()[name]
    path = REPO / "docs" / "reference" / f"{crd['spec']['names']['singular']}.md"
    assert path.read_text() == reference.render(crd), "run `make crds` to regenerate docs/reference"
    text = path.read_text()
    assert any(
        f in text for f in ("`spec.tasks[].forEach`", "`spec.schedule`", "`spec.slotsPerWorker`")
    )


def test_applied_by_policy_files_match_the_module() -> None:
    for directory in (CRD_DIR, REPO / "charts" / "treadle" / "templates"):
        assert (directory / policies.FILE).read_text() == policies.render(), (
            f"{directory / policies.FILE} is out of date: run `make crds`"
        )
