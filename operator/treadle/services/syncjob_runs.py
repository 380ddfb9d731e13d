"""The runs of SyncJobs: pods built from the job's template (restricted, without a token), or
Workflows of its `spec.workflow`; named after the job and the slot (so a slot can never start
twice: a second create is a 409), owned by the job, labelled with who holds their locks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from treadle.api import workflows
from treadle.core import access, runbodies
from treadle.services import kube
from treadle.services.kube import LABEL_COMPONENT


def _resource(kind: str) -> Any:
    return kube.Workflow if kind == runbodies.WORKFLOW else Pod


async def create_run(api: AsyncClient, body: dict[str, Any]) -> bool:
    """Creates the run's pod or Workflow; False when it exists already (this slot's run was
    started).  A Workflow run is stamped as the operator's (core/access.py): its rights are
    then its SyncJob's."""
    if body["kind"] == workflows.KIND:
        stamped = access.stamp(await kube.own_user_info(api))
        body["metadata"]["annotations"] = {**body["metadata"]["annotations"], **stamped}
    try:
        await api.create(_resource(body["kind"]).from_dict(body))
    except ApiError as error:
        if error.status.code == 409:
            return False
        raise
    return True


async def run_phase(
    api: AsyncClient, namespace: str, name: str, kind: str = runbodies.POD
) -> str | None:
    """The run's phase (`runbodies.phase_of`); None when the run does not exist."""
    try:
        found = await api.get(_resource(kind), name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            return None
        raise
    if kind == runbodies.WORKFLOW:
        return runbodies.phase_of(kind, (found.get("status") or {}).get("phase"))
    return runbodies.phase_of(kind, found.status.phase if found.status else None)


async def stop_run(api: AsyncClient, namespace: str, name: str, kind: str = runbodies.POD) -> None:
    """Stops a run: its pod is deleted; its Workflow is terminated (its exit tasks run, and
    it ends `Terminated`, which the watch then reports)."""
    if kind != runbodies.WORKFLOW:
        await delete_run(api, namespace, name)
        return
    try:
        await api.patch(
            kube.Workflow,
            name,
            {"spec": {"shutdown": "Terminate"}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
    except ApiError as error:
        if error.status.code != 404:
            raise


async def delete_run(
    api: AsyncClient, namespace: str, name: str, kind: str = runbodies.POD
) -> None:
    try:
        await api.delete(_resource(kind), name, namespace=namespace)
    except ApiError as error:
        if error.status.code != 404:
            raise


def _finished(kind: str, found: Any) -> str | None:
    """Succeeded or Failed for a finished run, else None."""
    if kind == runbodies.WORKFLOW:
        phase = (found.get("status") or {}).get("phase")
    else:
        phase = found.status.phase if found.status else None
    settled = runbodies.phase_of(kind, phase)
    return settled if settled in ("Succeeded", "Failed") else None


async def prune_runs(
    api: AsyncClient,
    namespace: str,
    job: str,
    *,
    keep_succeeded: int,
    keep_failed: int,
    keep_backfills_from: int = 0,
    kinds: Sequence[str] = (runbodies.POD, runbodies.WORKFLOW),
) -> int:
    """Deletes finished runs (pods and Workflows, or only `kinds`) beyond the history limits,
    oldest first; returns how many.  A backfill's runs have a history of their own: every run
    of backfill `keep_backfills_from` and later is kept, older backfills' runs are deleted."""
    pruned = 0
    for kind in kinds:
        found = []
        async for item in api.list(
            _resource(kind), namespace=namespace, labels={runbodies.LABEL_SYNCJOB: job}
        ):
            outcome = _finished(kind, item)
            labels = (item.metadata.labels if item.metadata else None) or {}
            backfill = str(labels.get(runbodies.LABEL_BACKFILL) or "")
            if outcome is None:
                continue
            if not backfill:
                found.append((outcome, item))
            elif backfill.isdigit() and int(backfill) < keep_backfills_from and item.metadata:
                await delete_run(api, namespace, str(item.metadata.name), kind)
                pruned += 1
        for phase, keep in (("Succeeded", keep_succeeded), ("Failed", keep_failed)):
            finished = sorted(
                (item for outcome, item in found if outcome == phase),
                key=lambda i: (
                    (i.metadata.creationTimestamp if i.metadata else None) or datetime.min
                ),
            )
            for item in finished[: max(0, len(finished) - keep)]:
                if item.metadata and item.metadata.name:
                    await delete_run(api, namespace, item.metadata.name, kind)
                    pruned += 1
    return pruned


LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


async def holder_lives(api: AsyncClient, namespace: str, holder: str) -> bool:
    """Whether a run of `holder` (a run's name, or the holder its runs share) is still under
    way: its lock, lapsed while no operator renewed it, must not go to another run."""
    if not LABEL_VALUE.match(holder):
        return False  # a lock held by hand (kubectl:...)
    for kind in (runbodies.POD, runbodies.WORKFLOW):
        try:
            named = await api.get(_resource(kind), holder, namespace=namespace)
        except ApiError as error:
            if error.status.code != 404:
                raise
        else:
            if _finished(kind, named) is None and _run_of_treadle(named):
                return True
        async for item in api.list(
            _resource(kind), namespace=namespace, labels={runbodies.LABEL_HOLDER: holder}
        ):
            if _finished(kind, item) is None:
                return True
    return False


def _run_of_treadle(found: Any) -> bool:
    labels = (found.metadata.labels if found.metadata else None) or {}
    return labels.get(LABEL_COMPONENT) == "sync-run"
