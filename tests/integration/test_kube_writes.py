"""The operator's own writes against a real API server: status merge patches that remove keys,
and a request annotation removed only while it still asks for what was done."""

from __future__ import annotations

import asyncio
import json

from lightkube import AsyncClient, KubeConfig

from support.cluster import Cluster
from treadle.core import workerpods
from treadle.core.patches import merge_patch
from treadle.services import kube, statuses

REQUEST = "example.com/request"


def workflow(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "treadle.dev/v1alpha1",
            "kind": "Workflow",
            # An annotation the operator ignores (the same code clears treadle.dev/retry), and
            # a suspended workflow, so that an operator running beside the test writes no more
            # than its first status.
            "metadata": {"name": name, "annotations": {REQUEST: "all"}},
            "spec": {"suspend": True, "tasks": [{"name": "a", "command": {"args": ["true"]}}]},
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
        kept = await kube.clear_annotation(api, namespace, "asked", REQUEST, "a")
        assert kept is None
        annotations = crds.get("twf", "asked", namespace)["metadata"]["annotations"]
        assert annotations[REQUEST] == "all"
        cleared = await kube.clear_annotation(api, namespace, "asked", REQUEST, "all")
        assert cleared is not None
        assert cleared.isdigit()
        annotations = crds.get("twf", "asked", namespace)["metadata"].get("annotations") or {}
        assert REQUEST not in annotations
        gone = await kube.clear_annotation(api, namespace, "nope", REQUEST, "all")
        assert gone is None
    finally:
        await api.close()


async def test_a_status_patch_from_the_last_written_status_removes_dropped_keys(
    crds: Cluster, namespace: str
) -> None:
    # A sync job whose slot never comes: an operator running beside the test writes only
    # fields of its own (nextScheduleTime, conditions), never these.
    job = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "SyncJob",
        "metadata": {"name": "patched"},
        "spec": {
            "schedule": "0 0 1 1 *",
            "template": {"spec": {"containers": [{"name": "c", "command": ["true"]}]}},
        },
    }
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job))
    api = client(crds, namespace)
    before = {"lastOutcome": "Skipped", "lastSkipReason": "PipelineLocked", "nextRetryTime": "x"}
    after = {"lastOutcome": "Succeeded", "attemptsInSlot": 2}
    try:
        assert await statuses.patch_status(api, kube.SyncJob, namespace, "patched", before)
        change = merge_patch(before, after)
        assert await statuses.patch_status(api, kube.SyncJob, namespace, "patched", change)
    finally:
        await api.close()
    status = crds.get("sj", "patched", namespace)["status"]
    assert (status["lastOutcome"], status["attemptsInSlot"]) == ("Succeeded", 2)
    assert "lastSkipReason" not in status
    assert "nextRetryTime" not in status


async def test_pools_putting_their_worker_urls_at_once_into_a_new_namespace_keep_every_one(
    crds: Cluster, namespace: str
) -> None:
    """Two pools' first looks make the namespace's `treadle-redis` Secret side by side.  Each
    used to apply its own key, and the later apply dropped the earlier one's: that pool's pods
    waited for ever with CreateContainerConfigError (seen in CI)."""
    api = client(crds, namespace)
    try:
        for round_ in range(3):
            crds.kubectl(
                "delete", "secret", kube.REDIS_SECRET, "-n", namespace, "--ignore-not-found"
            )
            pools = [f"{namespace}.p{round_}-{i}" for i in range(4)]
            await asyncio.gather(
                *(kube.put_worker_url(api, namespace, pool, f"redis://{pool}") for pool in pools)
            )
            data = crds.get("secret", kube.REDIS_SECRET, namespace)["data"]
            assert sorted(data) == sorted(pools)
    finally:
        await api.close()


async def test_a_worker_pod_made_from_an_earlier_workers_spec_is_replaced(
    crds: Cluster, namespace: str
) -> None:
    """Issue #31, problem 4: an edit of a suspended workflow's `workers` never reached the pod
    already made for it."""
    from lightkube.resources.core_v1 import Pod

    from treadle.api.workflows import Workers

    def pod(value: str) -> dict[str, object]:
        workers = Workers.model_validate({"env": [{"name": "MODE", "value": value}]})
        return workerpods.workflow_pod(
            workflow_name="wf", namespace=namespace, uid="u", pool="wf-u", index=0,
            spec=workers, default_image="treadle:dev",
        )  # fmt: skip

    api = client(crds, namespace)
    try:
        first = await kube.ensure_worker_pods(api, [pod("old")])
        assert first.created == 1
        again = await kube.ensure_worker_pods(api, [pod("old")])
        assert again.created == 0
        await kube.ensure_worker_pods(api, [pod("new")])  # the old one goes
        for _ in range(300):
            made = await kube.ensure_worker_pods(api, [pod("new")])
            if made.created:
                break
            await asyncio.sleep(0.2)
        found = await api.get(Pod, "wf-worker-0", namespace=namespace)
        env = {e.name: e.value for e in found.spec.containers[0].env or []}  # type: ignore[union-attr]
        assert env["MODE"] == "new"
    finally:
        await api.close()
