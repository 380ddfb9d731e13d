"""The ValidatingAdmissionPolicy that keeps `treadle.dev/applied-by` honest (core/access.py).

It runs as CEL inside the API server: no webhook to be down, bypassed or too small for the
object.  A stamp naming anyone but the user making the request is refused whenever the object
is created, its spec changes (its generation moves) or the stamp itself changes; no stamp is
allowed (the operator then lets the spec use no Secret, ConfigMap or PVC).
`python -m treadle.api.policies DIR` writes it beside the CRDs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from treadle.api import GROUP, pools, syncjobs, workflows

NAME = "treadle-applied-by"
FILE = f"{NAME}.policy.{GROUP}.yaml"

APPLIED_BY = f"{GROUP}/applied-by"
APPLIED_BY_GROUPS = f"{GROUP}/applied-by-groups"


def _annotation(obj: str, key: str) -> str:
    return f"{obj}.metadata.?annotations[?'{key}'].orValue('')"


VARIABLES = [
    {"name": "user", "expression": _annotation("object", APPLIED_BY)},
    {"name": "groups", "expression": _annotation("object", APPLIED_BY_GROUPS)},
    {
        "name": "kept",
        "expression": (
            "oldObject != null"
            " && object.metadata.?generation.orValue(0)"
            " == oldObject.metadata.?generation.orValue(0)"
            f" && variables.user == {_annotation('oldObject', APPLIED_BY)}"
            f" && variables.groups == {_annotation('oldObject', APPLIED_BY_GROUPS)}"
        ),
    },
    {
        "name": "requester",
        "expression": "request.userInfo.username",
    },
    {
        "name": "requesterGroups",
        "expression": "request.userInfo.?groups.orValue([]).join(',')",
    },
]

VALIDATION = {
    "expression": (
        "variables.user == '' || variables.kept"
        " || (variables.user == variables.requester"
        " && variables.groups == variables.requesterGroups)"
    ),
    "messageExpression": (
        f'"metadata.annotations[{APPLIED_BY}]: names " + variables.user + ", but "'
        ' + variables.requester + " (groups: " + variables.requesterGroups + ") makes this'
        f" request: leave {APPLIED_BY} and {APPLIED_BY_GROUPS} out (the admission webhook"
        ' sets them) or set them to your own"'
    ),
    "reason": "Forbidden",
}


def policy() -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": NAME, "labels": {"app.kubernetes.io/name": "treadle"}},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [
                            workflows.PLURAL,
                            workflows.TEMPLATE_PLURAL,
                            syncjobs.PLURAL,
                            pools.PLURAL,
                        ],
                    }
                ]
            },
            "variables": VARIABLES,
            "validations": [VALIDATION],
        },
    }


def binding() -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": NAME, "labels": {"app.kubernetes.io/name": "treadle"}},
        "spec": {"policyName": NAME, "validationActions": ["Deny"]},
    }


HEADER = "# Generated from operator/treadle/api/policies.py by `make crds`; do not edit.\n"


def render() -> str:
    return HEADER + yaml.safe_dump_all([policy(), binding()], sort_keys=False, width=100)


def write(directory: Path) -> Path:
    path = directory / FILE
    path.write_text(render())
    return path


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "crds")))
