"""The bodies of SyncJob runs, built: pods from the job's template (restricted, without a
token) or Workflows of its `spec.workflow`, named after the job and the slot (so a slot can never
start twice: a second create is a 409), owned by the job, labelled with who holds their locks,
and told their slot and fencing tokens.  Pure: services/syncjob_runs.py makes, reads and
prunes them."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from treadle.api import GROUP, VERSION, syncjobs, workflows
from treadle.api.syncjobs import SyncJobSpec
from treadle.core import gates, podspecs, syncruns, timestamps
from treadle.core.workerpods import COMPONENT_LABEL

LABEL_SYNCJOB = f"{GROUP}/syncjob"
SLOT_ANNOTATION = f"{GROUP}/slot"
LOCKS_ANNOTATION = f"{GROUP}/locks"
LABEL_HOLDER = f"{GROUP}/lock-holder"
LABEL_BACKFILL = f"{GROUP}/backfill-id"
"""On a backfill's runs: which backfill of the job (1, 2, ...) made them."""
NAME_LIMIT = 63
RunKind = Literal["Pod", "Workflow"]
POD: RunKind = "Pod"
WORKFLOW: RunKind = "Workflow"
FAILED_WORKFLOW_PHASES = ("Failed", "Stopped", "Terminated", "Invalid")


def run_name(job: str, moment: datetime, *, manual: bool = False, backfill: int = 0) -> str:
    """`<job>-<slot as yyyymmddhhmmss>` (`<job>-manual-<time>`, or `<job>-<slot>-b<n>` in
    backfill n), shortened with a hash when the job's name is long."""
    suffix = ("manual-" if manual else "") + moment.strftime("%Y%m%d%H%M%S")
    return _named(job, suffix + (f"-b{backfill}" if backfill else ""))


def holder_name(job: str, lane: str) -> str:
    """Who the locks of runs that share them are held for: `<job>-runs` (concurrencyPolicy
    Allow) or `<job>-backfill-<n>`."""
    return _named(job, lane)


def _named(job: str, suffix: str) -> str:
    name = f"{job}-{suffix}"
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha256(job.encode()).hexdigest()[:8]
    keep = NAME_LIMIT - len(suffix) - len(digest) - 2
    return f"{job[:keep].rstrip('-.')}-{digest}-{suffix}"


@dataclass(frozen=True)
class NewRun:
    """A run to make: its job, its name and slot, and the locks (with their fencing tokens) it
    runs under, held for `holder` (default: the run itself)."""

    job: str
    namespace: str
    uid: str
    spec: SyncJobSpec
    name: str
    slot: datetime
    locks: Sequence[tuple[str, int]]
    holder: str | None = None
    backfill: int = 0

    def metadata(self, given: dict[str, Any]) -> dict[str, Any]:
        """The run's metadata: Treadle's labels and annotations over `given`, and its owner."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "labels": {
                **(given.get("labels") or {}),
                LABEL_SYNCJOB: self.job,
                COMPONENT_LABEL: "sync-run",
                LABEL_HOLDER: self.holder or self.name,
                "app.kubernetes.io/name": "treadle",
                **({LABEL_BACKFILL: str(self.backfill)} if self.backfill else {}),
            },
            "annotations": {
                **(given.get("annotations") or {}),
                SLOT_ANNOTATION: timestamps.text(self.slot),
                LOCKS_ANNOTATION: json.dumps(dict(self.locks), sort_keys=True),
            },
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": syncjobs.KIND,
                    "name": self.job,
                    "uid": self.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }


def run_body(run: NewRun) -> dict[str, Any]:
    """The run's pod or Workflow, as its job's spec says."""
    return run_workflow(run) if run.spec.workflow is not None else run_pod(run)


def run_pod(run: NewRun) -> dict[str, Any]:
    """The run's pod: the template with Treadle's labels, owner, and restricted security; the
    locks it runs under (with their fencing tokens) are recorded on it."""
    spec = run.spec
    assert spec.template is not None
    template = copy.deepcopy(spec.template.model_dump(by_alias=True, exclude_none=True))
    pod_spec = template["spec"]
    told = run_env(run.slot, run.locks)
    pod_spec.update(
        restartPolicy="Never",
        automountServiceAccountToken=False,
        containers=[
            _with_env(podspecs.restricted_container(c), told)
            for c in pod_spec.get("containers") or []
        ],
        securityContext=podspecs.restricted_pod_context(pod_spec.get("securityContext")),
    )
    if pod_spec.get("initContainers"):
        pod_spec["initContainers"] = [
            _with_env(podspecs.restricted_container(c), told) for c in pod_spec["initContainers"]
        ]
    if spec.active_deadline_seconds is not None:
        pod_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    metadata = run.metadata(template.get("metadata") or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def run_workflow(run: NewRun) -> dict[str, Any]:
    """The run's Workflow: `spec.workflow` with the slot rendered into its params (raises
    templating.TemplateError when a param cannot render)."""
    assert run.spec.workflow is not None
    given = run.spec.workflow.model_dump(by_alias=True, exclude_unset=True)
    pipeline = [token for lock, token in run.locks if lock.startswith(gates.PIPELINE_PREFIX)]
    names = syncruns.context(
        slot=timestamps.text(run.slot), job=run.job, fencing_token=pipeline[0] if pipeline else None
    )
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": workflows.KIND,
        "metadata": run.metadata({}),
        "spec": syncruns.workflow_spec(given, names),
    }


def run_env(slot: datetime, locks: Sequence[tuple[str, int]]) -> list[dict[str, str]]:
    """What a run is told: its slot, and the fencing tokens of the locks it runs under, to pass
    to the systems it writes to (a write bearing a token older than the newest one seen comes
    from a run whose lock lapsed, and can be refused there).  TREADLE_FENCING_TOKEN is the
    pipeline lock's; TREADLE_FENCING_TOKENS holds every lock's, as JSON."""
    env = [{"name": "TREADLE_SLOT", "value": timestamps.text(slot)}]
    pipeline = [token for name, token in locks if name.startswith(gates.PIPELINE_PREFIX)]
    if pipeline:
        env.append({"name": "TREADLE_FENCING_TOKEN", "value": str(pipeline[0])})
    if locks:
        tokens = json.dumps(dict(locks), sort_keys=True)
        env.append({"name": "TREADLE_FENCING_TOKENS", "value": tokens})
    return env


def _with_env(container: dict[str, Any], env: list[dict[str, str]]) -> dict[str, Any]:
    """The container with Treadle's variables (users may not set TREADLE_ names: the
    admission refuses them, so these are the only ones)."""
    return {**container, "env": [*(container.get("env") or []), *env]}


def phase_of(kind: str, phase: str | None) -> str:
    """A run's phase as the scheduler reads it: Succeeded, Failed, or the phase it is in."""
    if kind == WORKFLOW and phase in FAILED_WORKFLOW_PHASES:
        return "Failed"
    return phase or "Pending"
