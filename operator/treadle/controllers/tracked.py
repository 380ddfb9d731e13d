"""What the workflow driver keeps of each workflow it drives between passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lightkube.models.core_v1 import ObjectReference

from treadle.api import GROUP, RETRY_ANNOTATION, VERSION, workflows
from treadle.api.workflows import WorkflowSpec, WorkflowStatus
from treadle.controllers.outputs import LoadedOutputs
from treadle.controllers.workers import WorkerState
from treadle.core import actions, engine, jobs, pools
from treadle.core.ledger import Ledger
from treadle.core.messages import Report
from treadle.core.requests import AnnotationRequests
from treadle.services import events


@dataclass
class Tracked:
    who: engine.Identity
    spec: WorkflowSpec
    status: WorkflowStatus
    generation: int | None
    due: datetime | None = None
    """When to advance without results; now-ish for a workflow that was just tracked."""
    news: int = 0
    """Counts what arrived from the watch (a spec edit, a worker pod gone): news arriving
    during an advance is not lost when the advance ends by setting `due`."""
    requeued_epoch: int = 0
    """The last Redis data loss this workflow's in-flight attempts were enqueued again for."""
    written: dict[str, Any] = field(default_factory=dict)
    """The status as last written (camelCase JSON): the base of the next merge patch."""
    written_at: datetime | None = None
    ledger: Ledger[Report] = field(default_factory=Ledger)
    """Its results received, applied, written and acknowledged (core/ledger.py)."""
    failures: int = 0
    """Advances failed in a row."""
    outputs: LoadedOutputs = field(default_factory=LoadedOutputs)
    """Stored outputs read back for the templates still to render (controllers.outputs)."""
    workers: WorkerState = field(default_factory=WorkerState)
    """What the owner of its worker pods knows of them (controllers.workers)."""
    retry_requests: AnnotationRequests = field(default_factory=AnnotationRequests)
    """Its `treadle.dev/retry` requests (a task name or "all")."""

    cancel_sent: datetime | None = None
    """When its workers were told it was terminated (spec.shutdown: Terminate)."""
    engine_cpu_seconds: float = 0.0
    """CPU time its last engine call took (the pass's share per namespace counts it)."""
    lost_results: set[str] = field(default_factory=set)
    """Pools whose results stream was found broken and repaired: the attempts in flight there
    fail on the next advance (their results may be gone) and are retried by their policy."""

    task_pools: dict[str, str] = field(init=False)
    """The pool each task runs on (its own `workerPool`, else the workflow's)."""
    pools: set[str] = field(init=False)
    """Every pool its tasks run on."""
    job_tasks: frozenset[str] = field(init=False)
    """Its tasks whose attempts run in Jobs of their own (`job`), not on workers."""
    indexed_tasks: frozenset[str] = field(init=False)
    """Its forEach `job` tasks whose children's first attempts share one Indexed Job."""
    served: dict[str, frozenset[str]] = field(init=False)
    """The tasks each of its pools runs for it: the only results that pool may send (decided
    once: the driver asks on every pass)."""

    def __post_init__(self) -> None:
        self.task_pools = pools.task_pools(self.spec, self.who.namespace, self.who.pool)
        self.pools = pools.pools_of(self.spec, self.who.namespace, self.who.pool)
        found: dict[str, set[str]] = {pool: set() for pool in self.pools}
        for task, pool in self.task_pools.items():
            found[pool].add(task)
        self.served = {pool: frozenset(tasks) for pool, tasks in found.items()}
        self.job_tasks = frozenset(t.name for t in self.spec.all_tasks if actions.own_pod(t))
        self.indexed_tasks = frozenset(
            t.name for t in self.spec.all_tasks if jobs.one_job_for_children(t)
        )

    @property
    def has_jobs(self) -> bool:
        return bool(self.job_tasks)

    @property
    def needs_workers(self) -> bool:
        """Whether any of its tasks runs on workers (one of only `job` tasks needs none)."""
        return len(self.job_tasks) < len(self.spec.all_tasks)

    def pool_of(self, task: str) -> str:
        return self.task_pools.get(task, self.who.pool)

    @property
    def reference(self) -> ObjectReference:
        return events.reference(
            api_version=f"{GROUP}/{VERSION}",
            kind=workflows.KIND,
            name=self.who.name,
            namespace=self.who.namespace,
            uid=self.who.uid,
        )

    @property
    def retry(self) -> str | None:
        """The manual retry being carried out (taken, its annotation not yet removed)."""
        return self.retry_requests.taken.get(RETRY_ANNOTATION)

    def look_again(self) -> None:
        """Something changed for the workflow: it is advanced on the next pass."""
        self.news += 1
        self.due = datetime.now(UTC)
