"""The operator's own writes against a real API server: status merge patches that remove keys,
and the retry annotation removed only while it still asks for what was done."""

from __future__ import annotations

import json

from lightkube import AsyncClient, KubeConfig

from support.cluster import Cluster
from treadle.api import RETRY_ANNOTATION
from treadle.core.patches import merge_patch
from treadle.services import kube


def workflow(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "treadle.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name, "annotations": {RETRY_ANNOTATION: "all"}},
            "spec": {"tasks": [{"name": "a", "command": {"args": ["true"]}}]},
        }
    )


def client(cluster: Cluster, namespace: str) -> AsyncClient:
    config = KubeConfig.from_file(cluster.kubeconfig)
    return AsyncClient(config, namespace=namespace, field_manager=kube.FIELD_MANAGER)


async def test_the_retry_annotation_is_removed_only_while_it_holds_the_handled_value(
    crds: Cluster, namespace: str
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("asked"))
    api = client(crds, namespace)
    try:
        kept = await kube.clear_annotation(api, namespace, "asked", RETRY_ANNOTATION, "a")
        assert kept is None
        annotations = crds.get("twf", "asked", namespace)["metadata"]["annotations"]
        assert annotations[RETRY_ANNOTATION] == "all"
        cleared = await kube.clear_annotation(api, namespace, "asked", RETRY_ANNOTATION, "all")
        assert cleared is not None
        assert cleared.isdigit()
        annotations = crds.get("twf", "asked", namespace)["metadata"].get("annotations") or {}
        assert RETRY_ANNOTATION not in annotations
        gone = await kube.clear_annotation(api, namespace, "nope", RETRY_ANNOTATION, "all")
        assert gone is None
    finally:
        await api.close()


async def test_a_status_patch_from_the_last_written_status_removes_dropped_keys(
    crds: Cluster, namespace: str
) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow("patched"))
    api = client(crds, namespace)
    before = {"phase": "Running", "tasks": {"a": {"phase": "Retrying", "nextRetryAt": "x"}}}
    after = {"phase": "Running", "tasks": {"a": {"phase": "Queued", "attempts": 2}}}
    try:
        assert await kube.patch_workflow_status(api, namespace, "patched", before)
        assert await kube.patch_workflow_status(
            api, namespace, "patched", merge_patch(before, after)
        )
    finally:
        await api.close()
    # (An operator of an earlier test may be running and write conditions of its own.)
    assert crds.get("twf", "patched", namespace)["status"]["tasks"] == after["tasks"]
