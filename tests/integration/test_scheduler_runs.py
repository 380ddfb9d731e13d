"""The scheduler following a run pod to its end against the real API server, when the pod's
watch events come at awkward moments or not at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Pod
from lightkube.types import PatchType

from support.cluster import Cluster
from treadle.api.syncjobs import SyncJobStatus
from treadle.controllers.scheduler import NEVER, Scheduler
from treadle.core import runbodies, slots, syncadmission
from treadle.core.syncsteps import Attempt
from treadle.runtime import CancelToken
from treadle.services import kube, statuses, syncjob_runs

RUN = "orders-manual-1"
LOCK = "treadle-pipeline-shared"


@pytest.fixture
async def api(crds: Cluster, namespace: str) -> AsyncIterator[AsyncClient]:
    config = KubeConfig.from_file(crds.kubeconfig)
    client = AsyncClient(config, namespace=namespace, field_manager=kube.FIELD_MANAGER)
    yield client
    await client.close()


async def running_job(api: AsyncClient, namespace: str, phase: str) -> Scheduler:
    """A SyncJob whose status says its run is active, the run's pod in `phase` (on a node no
    agent serves, so nothing changes it), and a scheduler tracking the job."""
    # Suspended and yearly: an operator running beside the test never starts a run of it.
    spec = {
        "schedule": "0 0 1 1 *",
        "suspend": True,
        "template": {"spec": {"containers": [{"name": "sync", "image": "x"}]}},
    }
    job = await api.create(
        kube.SyncJob.from_dict(
            {"metadata": {"name": "orders", "namespace": namespace}, "spec": spec}
        )
    )
    body: dict[str, Any] = job.to_dict()
    status = {"activeRun": RUN, "lastAttemptTime": "2026-01-01T00:00:00Z"}
    assert await statuses.patch_status(api, kube.SyncJob, namespace, "orders", status)
    pod = Pod(
        metadata=ObjectMeta(name=RUN, namespace=namespace),
        spec={"nodeName": "nowhere", "containers": [{"name": "sync", "image": "x"}]},
    )
    await api.create(pod)
    await set_phase(api, namespace, phase)
    verdict = syncadmission.admit_syncjob(spec, None, generation=1, now=datetime.now(UTC))
    assert verdict.runnable is not None
    scheduler = Scheduler(api)
    scheduler.track(body, verdict.runnable, SyncJobStatus.model_validate(status))
    return scheduler


async def set_phase(api: AsyncClient, namespace: str, phase: str) -> None:
    change = {"status": {"phase": phase}}
    await api.patch(Pod.Status, RUN, change, namespace=namespace, patch_type=PatchType.MERGE)


async def outcome(api: AsyncClient, namespace: str) -> Any:
    job = await api.get(kube.SyncJob, "orders", namespace=namespace)
    return (job.status or {}).get("lastOutcome"), (job.status or {}).get("activeRun")


async def test_a_pod_event_that_lands_while_the_phase_is_read_is_not_overwritten(
    api: AsyncClient, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduler = await running_job(api, namespace, "Running")
    read = syncjob_runs.run_phase

    async def read_then_hear(
        client: AsyncClient, ns: str, name: str, kind: str = "Pod"
    ) -> str | None:
        phase = await read(client, ns, name, kind)
        # The pod ended, and its watch event arrived, while the answer was on its way.
        uid = next(iter(scheduler.jobs))
        scheduler.run_changed(uid, name, "Succeeded")
        return phase

    monkeypatch.setattr(syncjob_runs, "run_phase", read_then_hear)
    await scheduler.execute(CancelToken())
    await scheduler.settle()
    assert await outcome(api, namespace) == ("Succeeded", None)


async def test_a_run_whose_end_was_never_heard_of_is_found_at_its_next_lock_renewal(
    api: AsyncClient, namespace: str
) -> None:
    scheduler = await running_job(api, namespace, "Running")
    await scheduler.execute(CancelToken())  # takes the run's locks, sees it running
    await scheduler.settle()
    assert await outcome(api, namespace) == (None, RUN)
    job = next(iter(scheduler.jobs.values()))
    assert job.held
    assert job.phases[RUN] == "Running"
    # The pod ends, and no watch event ever tells the scheduler.
    await set_phase(api, namespace, "Failed")
    job.due = job.renew_at = datetime.now(UTC)
    await scheduler.execute(CancelToken())
    await scheduler.settle()
    assert await outcome(api, namespace) == ("Failed", None)
    assert not job.held


async def test_a_suspended_job_is_looked_at_once_then_left_until_news(
    api: AsyncClient, namespace: str
) -> None:
    scheduler = await running_job(api, namespace, "Succeeded")
    await scheduler.execute(CancelToken())  # finishes the run, then decides: suspended
    await scheduler.settle()
    await scheduler.execute(CancelToken())
    await scheduler.settle()
    job = next(iter(scheduler.jobs.values()))
    assert job.due == NEVER
    await scheduler.execute(CancelToken())
    assert job.busy is None or job.busy.done()  # nothing spawned: no loop of looks
    assert scheduler._timer is None  # and no timer armed for it


async def test_a_lapsed_lock_whose_run_still_lives_goes_to_no_other_run(
    api: AsyncClient, namespace: str
) -> None:
    """The operator was away longer than a Lease's duration: the first job's run still runs
    but its pipeline lock lapsed.  A second job on the same pipeline must not get the lock
    until that run has ended."""
    first = "first-20260101000000"
    lapsed = datetime.now(UTC) - timedelta(minutes=5)
    spec = LeaseSpec(
        holderIdentity=first, leaseDurationSeconds=60, acquireTime=lapsed, renewTime=lapsed,
        leaseTransitions=3,
    )  # fmt: skip
    await api.create(Lease(metadata=ObjectMeta(name=LOCK, namespace=namespace), spec=spec))
    labels = {kube.LABEL_COMPONENT: "sync-run", runbodies.LABEL_HOLDER: first}
    pod = Pod(
        metadata=ObjectMeta(name=first, namespace=namespace, labels=labels),
        spec={"nodeName": "nowhere", "containers": [{"name": "sync", "image": "x"}]},
    )
    await api.create(pod)
    # Yearly: an operator running beside the test never starts a run of it.
    job_spec = {"schedule": "0 0 1 1 *", "pipeline": "shared",
                "template": {"spec": {"containers": [{"name": "sync", "image": "x"}]}}}  # fmt: skip
    made = await api.create(
        kube.SyncJob.from_dict(
            {"metadata": {"name": "second", "namespace": namespace}, "spec": job_spec}
        )
    )
    verdict = syncadmission.admit_syncjob(job_spec, None, generation=1, now=datetime.now(UTC))
    assert verdict.runnable is not None
    scheduler = Scheduler(api)
    scheduler.track(made.to_dict(), verdict.runnable, SyncJobStatus())
    job = next(iter(scheduler.jobs.values()))
    now = datetime.now(UTC)
    await scheduler.attempts.make(
        job, Attempt(slots.Slot(now, now + timedelta(hours=1)), manual=True)
    )
    assert (job.status.last_outcome, job.status.last_skip_holder) == ("Skipped", first)
    lease = await api.get(Lease, LOCK, namespace=namespace)
    assert lease.spec is not None
    assert (lease.spec.holderIdentity, lease.spec.leaseTransitions) == (first, 3)
    # Once the first run has ended, the lapsed lock is free to take.
    await api.patch(
        Pod.Status, first, {"status": {"phase": "Succeeded"}}, namespace=namespace,
        patch_type=PatchType.MERGE,
    )  # fmt: skip
    await scheduler.attempts.make(
        job, Attempt(slots.Slot(now, now + timedelta(hours=1)), manual=True)
    )
    assert (job.status.active_run or "").startswith("second-manual-")
    lease = await api.get(Lease, LOCK, namespace=namespace)
    assert lease.spec is not None
    assert (lease.spec.holderIdentity, lease.spec.leaseTransitions) == (job.status.active_run, 4)


async def test_a_workflow_run_past_its_deadline_is_terminated_then_counts_as_failed(
    api: AsyncClient, namespace: str
) -> None:
    run = "nightly-20260101000000"
    tasks = [{"name": "a", "command": {"args": ["sleep", "600"]}}]
    spec = {"schedule": "0 0 1 1 *", "suspend": True, "activeDeadlineSeconds": 1,
            "workflow": {"spec": {"suspend": True, "tasks": tasks}}}  # fmt: skip
    made = await api.create(
        kube.SyncJob.from_dict(
            {"metadata": {"name": "nightly", "namespace": namespace}, "spec": spec}
        )
    )
    entry = {"name": run, "kind": "Workflow", "slot": "2026-01-01T00:00:00Z", "holder": run,
             "started": "2026-01-01T00:00:00Z"}  # fmt: skip
    status = {"activeRun": run, "activeRuns": [entry], "currentSlot": "2026-01-01T00:00:00Z"}
    assert await statuses.patch_status(api, kube.SyncJob, namespace, "nightly", status)
    workflow = {"metadata": {"name": run, "namespace": namespace},
                "spec": {"suspend": True, "tasks": tasks}}  # fmt: skip
    await api.create(kube.Workflow.from_dict(workflow))
    verdict = syncadmission.admit_syncjob(spec, None, generation=1, now=datetime.now(UTC))
    assert verdict.runnable is not None
    scheduler = Scheduler(api)
    scheduler.track(made.to_dict(), verdict.runnable, SyncJobStatus.model_validate(status))
    await scheduler.execute(CancelToken())
    await scheduler.settle()
    found = await api.get(kube.Workflow, run, namespace=namespace)
    assert found["spec"]["shutdown"] == "Terminate"  # terminated (its exit tasks run), not deleted
    job = next(iter(scheduler.jobs.values()))
    assert [r.name for r in job.status.active_runs] == [run]  # until it has ended
    await api.patch(
        kube.Workflow.Status, run, {"status": {"phase": "Terminated"}}, namespace=namespace,
        patch_type=PatchType.MERGE,
    )  # fmt: skip
    scheduler.run_changed(job.uid, run, "Failed")
    await scheduler.execute(CancelToken())
    await scheduler.settle()
    ended = await api.get(kube.SyncJob, "nightly", namespace=namespace)
    assert ended.status["lastOutcome"] == "Failed"
    assert ended.status["activeRuns"] == []
    told = [e.message async for e in api.list(Event, namespace=namespace) if e.reason == "Failed"]
    assert told == [f"run {run} activeDeadlineSeconds (1) exceeded"]
