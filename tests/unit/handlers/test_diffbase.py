"""The operator's kopf diff base: a digest of the spec, without copying status."""

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


def test_the_lean_essence_holds_a_digest_of_the_spec_and_the_labels_only() -> None:
    body = kopf.Body(workflow(1000))
    essence = LeanDiffBase(prefix=GROUP, key=KEY).build(body=body)
    assert set(essence) == {"spec", "metadata"}
    assert set(essence["spec"]) == {"sha256"}
    assert essence["metadata"] == {"labels": {"team": "data"}}


def test_a_spec_change_changes_the_essence_and_a_status_change_does_not() -> None:
    ours = LeanDiffBase(prefix=GROUP, key=KEY)
    before = ours.build(body=kopf.Body(workflow(1)))
    later = workflow(5)
    assert ours.build(body=kopf.Body(later)) == before
    later["spec"]["tasks"][0]["name"] = "other"
    assert ours.build(body=kopf.Body(later)) != before


def test_the_record_of_a_spec_of_a_mebibyte_is_under_a_kibibyte() -> None:
    """Issue #31, problem 4: a spec over 256 KiB could not fit kopf's last-handled annotation,
    so admission ran again for the object's whole life."""
    body = workflow(1)
    body["spec"]["params"] = {"pad": "x" * (1 << 20)}
    body["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "y" * (
        1 << 20
    )
    ours = LeanDiffBase(prefix=GROUP, key=KEY)
    patch = kopf.Patch()
    ours.store(body=kopf.Body(body), patch=patch, essence=ours.build(body=kopf.Body(body)))
    stored = patch["metadata"]["annotations"][f"{GROUP}/{KEY}"]
    assert len(stored) < 1024


def test_a_handler_on_status_fields_still_sees_them() -> None:
    body = kopf.Body(workflow(3))
    ours = LeanDiffBase(prefix=GROUP, key=KEY)
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key=KEY)
    fields = [("status", "phase")]
    assert ours.build(body=body, extra_fields=fields) == kopfs.build(body=body, extra_fields=fields)
    assert ours.build(body=body, extra_fields=fields)["status"] == {"phase": "Running"}
