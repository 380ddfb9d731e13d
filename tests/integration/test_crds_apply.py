"""The CRDs on a real API server: bad manifests are refused at apply time, naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cluster import REPO, Cluster
from support.operator import OperatorProcess

TASK = {"name": "a", "command": {"args": ["true"]}}


def workflow(name: str, **spec: object) -> str:
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"tasks": [TASK], **spec},
    }
    return json.dumps(body)


def apply(cluster: Cluster, namespace: str, manifest: str) -> tuple[int, str]:
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest, check=False)
    return result.returncode, result.stderr


def test_two_tasks_with_the_same_name_are_rejected_by_kubectl_apply(
    crds: Cluster, namespace: str
) -> None:
    code, error = apply(crds, namespace, workflow("dup", tasks=[TASK, TASK]))
    assert code != 0
    assert "spec.tasks[1]: Duplicate value" in error


def test_a_task_with_two_actions_is_rejected_by_kubectl_apply(
    crds: Cluster, namespace: str
) -> None:
    task = {**TASK, "http": {"url": "http://example"}}
    code, error = apply(crds, namespace, workflow("two-actions", tasks=[task]))
    assert code != 0
    assert "spec.tasks[0]: Invalid value" in error
    assert "exactly one action" in error


def test_a_negative_retry_limit_is_rejected_by_kubectl_apply(crds: Cluster, namespace: str) -> None:
    code, error = apply(crds, namespace, workflow("neg", defaults={"retry": {"limit": -1}}))
    assert code != 0
    assert "spec.defaults.retry.limit" in error
    assert "greater than or equal to 0" in error


def test_a_long_name_is_rejected_because_names_become_label_values(
    crds: Cluster, namespace: str
) -> None:
    code, error = apply(crds, namespace, workflow("x" * 64))
    assert code != 0
    assert "metadata.name: must be no more than 63 characters" in error


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_passes_server_side_validation(
    crds: Cluster, operator: OperatorProcess, namespace: str, path: Path
) -> None:
    """With the webhook serving: a dry run of a file holding a template and a run of it makes
    neither, and the run must not be refused for its template's absence."""
    crds.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path))


def test_kubectl_get_twf_prints_the_spec_columns(crds: Cluster, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("cols"))
    header = crds.kubectl("get", "twf", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "PROGRESS", "AGE", "MESSAGE"]


def test_kubectl_get_treadle_lists_both_kinds(crds: Cluster, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "03-sync-job.yaml"))
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("both"))
    names = crds.kubectl("get", "treadle", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(names) == ["syncjob.treadle.dev/orders-to-warehouse", "workflow.treadle.dev/both"]


def test_kubectl_explain_shows_the_field_docs(crds: Cluster) -> None:
    out = crds.kubectl("explain", "twf.spec.tasks").stdout
    assert "One node of the DAG." in out
    assert "dependsOn" in out
