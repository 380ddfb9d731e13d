"""Pods Treadle makes for a user hold only what the allow-list lets through (issue #13,
problem 3: a SyncJob with hostNetwork, a serviceAccountName and a hostPath `/` volume was
accepted and its run pod created with all three)."""

from __future__ import annotations

from typing import Any

import pytest

from treadle.core import admission, podspecs, secretrefs, syncadmission


def job(pod: dict[str, Any], **template: Any) -> dict[str, Any]:
    return {"schedule": "* * * * *", "template": {"spec": pod, **template}}


CONTAINER = {"name": "sync", "image": "etl:1", "command": ["run"]}


def test_the_root_on_the_node_job_is_refused_naming_each_field() -> None:
    pod = {
        "hostNetwork": True,
        "serviceAccountName": "admin",
        "containers": [{**CONTAINER, "volumeMounts": [{"name": "root", "mountPath": "/host"}]}],
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
    }
    problems = syncadmission.syncjob_problems(job(pod))
    assert [p.split(":")[0] for p in problems] == [
        "spec.template.spec.hostNetwork",
        "spec.template.spec.serviceAccountName",
        "spec.template.spec.volumes[0].hostPath",
    ]


@pytest.mark.parametrize(
    ("pod", "field"),
    [
        ({"nodeName": "n1"}, "spec.nodeName"),
        ({"hostPID": True}, "spec.hostPID"),
        ({"automountServiceAccountToken": True}, "spec.automountServiceAccountToken"),
        ({"securityContext": {"runAsUser": 0}}, "spec.securityContext.runAsUser"),
        ({"securityContext": {"sysctls": []}}, "spec.securityContext.sysctls"),
        ({"tolerations": [{"operator": "Exists"}]}, "spec.tolerations[0]"),
        ({"volumes": [{"name": "d", "nfs": {}}]}, "spec.volumes[0].nfs"),
    ],
)
def test_pod_fields_outside_the_allow_list_are_refused(pod: dict[str, Any], field: str) -> None:
    [problem] = podspecs.pod_problems({"containers": [CONTAINER], **pod}, "spec")
    assert problem.startswith(f"{field}:")


@pytest.mark.parametrize(
    ("container", "field"),
    [
        ({"securityContext": {"privileged": True}}, "securityContext.privileged"),
        (
            {"securityContext": {"allowPrivilegeEscalation": True}},
            "securityContext.allowPrivilegeEscalation",
        ),
        (
            {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
            "securityContext.capabilities.add",
        ),
        ({"ports": [{"containerPort": 80, "hostPort": 80}]}, "ports[0].hostPort"),
        (
            {
                "volumeMounts": [
                    {"name": "v", "mountPath": "/v", "mountPropagation": "Bidirectional"}
                ]
            },
            "volumeMounts[0].mountPropagation",
        ),
        ({"env": [{"name": "TREADLE_REDIS_URL", "value": "x"}]}, "env[0].name"),
        ({"lifecycle": {}}, "lifecycle"),
    ],
)
def test_container_fields_outside_the_allow_list_are_refused(
    container: dict[str, Any], field: str
) -> None:
    [problem] = podspecs.pod_problems({"containers": [{**CONTAINER, **container}]}, "spec")
    assert problem.startswith(f"spec.containers[0].{field}:")


def test_an_ordinary_run_pod_is_allowed() -> None:
    pod = {
        "containers": [
            {
                **CONTAINER,
                "env": [
                    {"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}}
                ],
                "envFrom": [{"configMapRef": {"name": "settings"}}],
                "resources": {"requests": {"cpu": "100m"}},
                "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],
                "securityContext": {"readOnlyRootFilesystem": True, "runAsUser": 1000},
            }
        ],
        "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "s", "secret": {"secretName": "tls"}},
        ],
        "nodeSelector": {"pool": "etl"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "batch",
    }
    assert syncadmission.syncjob_problems(job(pod)) == []
    assert podspecs.secrets_in_pod(pod) == {"db", "tls"}


def test_template_metadata_may_hold_labels_and_annotations_only() -> None:
    problems = syncadmission.syncjob_problems(
        job(
            {"containers": [CONTAINER]}, metadata={"labels": {"a": "b"}, "namespace": "kube-system"}
        )
    )
    assert problems == [
        "spec.template.metadata.namespace: not allowed (labels and annotations are)"
    ]


def test_the_secrets_a_workflow_names_are_listed_with_their_fields() -> None:
    from_w = {"secretKeyRef": {"name": "w", "key": "k"}}
    spec = {
        "workers": {"env": [{"name": "T", "valueFrom": from_w}]},
        "tasks": [
            {
                "name": "call",
                "http": {
                    "url": "https://example.test",
                    "headers": [
                        {"name": "Authorization",
                         "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
                    ],
                },
            }
        ],
    }  # fmt: skip
    assert secretrefs.secrets_named("Workflow", spec) == [
        ("w", "spec.workers.env"),
        ("api", "spec.tasks[0].http.headers[0].valueFrom"),
    ]


def test_worker_env_may_not_override_treadles_own_variables() -> None:
    spec = {
        "tasks": [{"name": "a", "command": {"args": ["true"]}}],
        "workers": {"env": [{"name": "TREADLE_REDIS_URL", "value": "redis://elsewhere"}]},
    }
    problems = admission.admit_workflow(spec, {})[1]
    assert problems == [
        "spec.workers.env[0].name: 'TREADLE_REDIS_URL': names starting with TREADLE_ are "
        "Treadle's own"
    ]


@pytest.mark.parametrize(
    ("resources", "problem"),
    [
        ({"requests": {"cpu": "lots"}}, "x.requests.cpu: 'lots' is not a quantity"),
        ({"limits": {"memory": "1GB"}}, "x.limits.memory: '1GB' is not a quantity"),
        ({"limits": {"memory": -1}}, "x.limits.memory: must not be negative"),
        ({"limits": {"memory": True}}, "x.limits.memory: must be a quantity"),
        ({"requests": "1"}, "x.requests: must map resource names to quantities"),
        ({"request": {}}, "x.request: not allowed"),
        ({"limits": {"bad name!": "1"}}, "x.limits.bad name!: not a resource name"),
    ],
)
def test_a_resources_quantity_the_api_server_would_refuse_is_refused_at_apply_time(
    resources: object, problem: str
) -> None:
    """Issue #31, problem 4: an invalid quantity left its workflow Pending for ever."""
    [found] = podspecs.resources_problems(resources, "x")
    assert found.startswith(problem)


def test_real_quantities_and_extended_resources_pass() -> None:
    resources = {
        "requests": {"cpu": "500m", "memory": "1.5Gi", "ephemeral-storage": 2},
        "limits": {"nvidia.com/gpu": 1, "memory": "2e9", "cpu": 0.5},
    }
    assert podspecs.resources_problems(resources, "x") == []
