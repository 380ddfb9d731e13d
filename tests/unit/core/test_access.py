"""What a spec makes Treadle use on its applier's behalf, and who that applier is."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from treadle.api import base
from treadle.core import access, admission, secretrefs

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=40,
)


def names(spec: Any) -> set[tuple[str, str]]:
    return {(r.resource, r.name) for r in access.references(spec)}


def test_every_secret_configmap_and_pvc_a_workflow_names_is_found() -> None:
    spec = {
        "workers": {
            "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}},
            ]
        },
        "tasks": [
            {
                "name": "t",
                "http": {
                    "url": "http://x",
                    "headers": [
                        {"name": "H", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}}
                    ],
                },
            }
        ],
    }
    assert names(spec) == {("secrets", "s1"), ("secrets", "s2"), ("configmaps", "c1")}


def test_a_pod_templates_volumes_env_from_and_pull_secrets_are_found() -> None:
    pod = {
        "template": {
            "spec": {
                "imagePullSecrets": [{"name": "pull"}],
                "containers": [
                    {"envFrom": [{"secretRef": {"name": "s"}}, {"configMapRef": {"name": "c"}}]}
                ],
                "volumes": [
                    {"name": "a", "secret": {"secretName": "vs"}},
                    {"name": "b", "configMap": {"name": "vc"}},
                    {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                ],
            }
        }
    }
    assert names(pod) == {
        ("secrets", "pull"),
        ("secrets", "s"),
        ("secrets", "vs"),
        ("configmaps", "c"),
        ("configmaps", "vc"),
        ("persistentvolumeclaims", "data"),
    }


def test_a_pools_secret_names_are_found_and_params_are_never_read_as_references() -> None:
    assert names({"secrets": ["a", "b"]}) == {("secrets", "a"), ("secrets", "b")}
    assert names({"params": {"secretRef": {"name": "x"}}}) == set()


def test_every_reference_the_webhook_checks_is_one_the_operator_checks_too() -> None:
    spec = {"tasks": [{"name": "t", "command": {"args": ["true"]}}], "secrets": ["p"]}
    webhook = {name for name, _ in secretrefs.secrets_named("WorkerPool", spec)}
    assert {("secrets", n) for n in webhook} <= names(spec)


def test_a_stamp_reads_back_as_its_user_and_groups() -> None:
    stamped = access.stamp({"username": "alice", "groups": ["dev", "system:authenticated"]})
    assert access.requester(stamped) == access.Requester("alice", ("dev", "system:authenticated"))
    assert access.requester({}) is None
    assert access.requester({access.APPLIED_BY: ""}) is None


def test_the_messages_name_the_field_the_object_and_the_user() -> None:
    reference = access.Reference("configmaps", "db", "spec.workers.env[0].valueFrom")
    assert access.refusal(reference, access.Requester("bob"), "team") == (
        "spec.workers.env[0].valueFrom: names ConfigMap 'db', which 'bob' may not get in "
        "namespace 'team'"
    )
    assert "apply it again" in access.unstamped([reference], "Workflow")


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_is_walked_without_error(value: Any) -> None:
    for reference in access.references(value):
        assert reference.resource in access.RESOURCES
        assert reference.name


def test_a_spec_nested_far_deeper_than_python_recursion_is_walked() -> None:
    deep: Any = {"secretRef": {"name": "bottom"}}
    for _ in range(50_000):
        deep = {"a": [deep]}
    assert names(deep) == {("secrets", "bottom")}
    assert base.json_depth(deep, 32) == 33


def test_params_over_64_kib_or_32_deep_are_refused_naming_the_field() -> None:
    deep: Any = 1
    for _ in range(33):
        deep = [deep]
    task = [{"name": "a", "command": {"args": ["true"]}}]
    for params, problem in (
        ({"deep": deep}, "spec.params: nests deeper than 32 levels"),
        ({"pad": "x" * 70_000}, "spec.params: is 70010 bytes as JSON, over the limit of 65536"),
    ):
        _, problems = admission.admit_workflow({"params": params, "tasks": task}, {})
        assert problems == [problem]
    parsed, problems = admission.admit_workflow({"params": {"ok": [[1]]}, "tasks": task}, {})
    assert parsed is not None
    assert not problems
