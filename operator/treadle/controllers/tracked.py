"""What the workflow driver keeps of each workflow it drives between passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lightkube.models.core_v1 import ObjectReference

from treadle.api import GROUP, VERSION, workflows
from treadle.api.workflows import WorkflowSpec, WorkflowStatus
from treadle.controllers.outputs import LoadedOutputs
from treadle.controllers.workers import WorkerState
from treadle.core import engine, pools
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
    requeued_epoch: int = 0
    """The last Redis data loss this workflow's in-flight attempts were enqueued again for."""
    written: dict[str, Any] = field(default_factory=dict)
    """The status as last written (camelCase JSON): the base of the next merge patch."""
    replaced: bool = False
    """`status` was replaced by the API server's (a handler tracked the workflow again): the
    results applied since the last write are not in it and are applied again."""
    written_at: datetime | None = None
    unacked: list[tuple[str, str]] = field(default_factory=list)
    """Results (pool, entry id) applied to `status` but not yet written: acknowledged once
    they are."""
    unwritten: list[Report] = field(default_factory=list)
    """Those results themselves, to apply again if `status` is replaced before the write."""
    retained: list[Report] = field(default_factory=list)
    """Results whose advance failed (API server or Redis away), applied on the next one."""
    failures: int = 0
    """Advances failed in a row."""
    outputs: LoadedOutputs = field(default_factory=LoadedOutputs)
    """Stored outputs read back for the templates still to render (controllers.outputs)."""
    workers: WorkerState = field(default_factory=WorkerState)
    """What the owner of its worker pods knows of them (controllers.workers)."""
    retry: str | None = None
    """A manual retry asked for (a task name or "all"), carried out on the next pass."""
    retry_requests: AnnotationRequests = field(default_factory=AnnotationRequests)
    enqueued_unwritten: set[tuple[str, int]] = field(default_factory=set)
    """Attempts (key, attempt) enqueued by an advance whose status write has not happened yet:
    an advance that failed after enqueuing and is tried again must not enqueue them twice (the
    engine, given the same status, asks for the same attempts)."""

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
