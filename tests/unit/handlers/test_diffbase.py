"""The operator's kopf diff base: the same essence as kopf's own, without copying status."""

from __future__ import annotations

from typing import Any

import kopf

from treadle.api import GROUP
from treadle.handlers.settings import LeanDiffBase

KEY = "last-handled-configuration"


def workflow(children: int) -> dict[str, Any]:
    return {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": "fan",
            "namespace": "default",
            "labels": {"team": "data"},
            "annotations": {
                "note": "kept",
                f"{GROUP}/{KEY}": '{"spec": {"tasks": []}}',
                "kopf.zalando.org/last-handled-configuration": "{}",
            },
            "ownerReferences": [{"kind": "Thing", "name": "owner", "uid": "u"}],
            "managedFields": [{"manager": "treadle", "fieldsV1": {"f:status": {}}}] * children,
            "resourceVersion": "42",
        },
        "spec": {"tasks": [{"name": "fan", "forEach": ["a", "b"]}]},
        "status": {"phase": "Running", "outputs": [{"n": i} for i in range(children)]},
    }


def test_the_lean_essence_is_the_one_kopf_builds() -> None:
    body = kopf.Body(workflow(1000))
    ours = LeanDiffBase(prefix=GROUP, key=KEY)
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key=KEY)
    essence = ours.build(body=body)
    assert essence == kopfs.build(body=body)
    assert "status" not in essence
    assert essence["spec"] == {"tasks": [{"name": "fan", "forEach": ["a", "b"]}]}


def test_a_handler_on_status_fields_still_sees_them() -> None:
    body = kopf.Body(workflow(3))
    ours = LeanDiffBase(prefix=GROUP, key=KEY)
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key=KEY)
    fields = [("status", "phase")]
    assert ours.build(body=body, extra_fields=fields) == kopfs.build(body=body, extra_fields=fields)
    assert ours.build(body=body, extra_fields=fields)["status"] == {"phase": "Running"}
