"""The engine driver: one loop of the worker runtime beside kopf that drives every workflow.

Each pass takes in the results waiting (controllers/intake.py, up to 20,000) and advances every
workflow that got results or whose retry, deadline or status write is due, side by side
(controllers/sidebyside.py); one advance gathers, steps the pure engine and applies its answer
(controllers/advance.py), writing status only through controllers/wfapply.py.  Results are
acknowledged only once the status that records them is written (core/ledger.py), so a crash
re-reads them (the engine ignores what it already applied).  Results are applied, and the next
tasks enqueued, as soon as they arrive (passes PASS_INTERVAL_SECONDS apart), while a
workflow's status is written at most once a second (core/pacing.py), never once per task.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lightkube import AsyncClient

from treadle.api import RETRY_ANNOTATION
from treadle.api.workflows import WorkflowSpec, WorkflowStatus
from treadle.controllers import outputs
from treadle.controllers.advance import Advancer
from treadle.controllers.intake import ResultIntake
from treadle.controllers.jobtasks import JobTasks
from treadle.controllers.sidebyside import SideBySide
from treadle.controllers.tracked import Tracked
from treadle.controllers.wfapply import WorkflowApplier
from treadle.controllers.workers import PoolReadiness, WorkerOwner, no_pools
from treadle.core import engine
from treadle.core.messages import Report
from treadle.runtime import CancelToken, Directive
from treadle.services import kube
from treadle.services.pool_users import PoolUsers
from treadle.services.results import ResultStream

log = logging.getLogger(__name__)

PASS_INTERVAL_SECONDS = 0.01
"""The floor between passes: a task's successor is enqueued within about this of its result."""


@dataclass
class Driver:
    results: ResultStream
    api: AsyncClient
    worker_redis_url: str
    """Where workers reach Redis; with pool users, the user and password are the pool's."""
    worker_image: str
    users: PoolUsers | None = None
    """Makes each pool's Redis user; None: workers get `worker_redis_url` as it is."""
    worker_metrics_port: int = 0
    pool_ready: PoolReadiness = no_pools
    """How many workers of a WorkerPool are ready, and why not more (the pool keeper's)."""
    jobs: JobTasks | None = None
    """Makes `job` tasks' Jobs and reports their ends (None: no job tasks, in tests)."""
    workflows: dict[str, Tracked] = field(default_factory=dict)
    owner: WorkerOwner = field(init=False)
    """Owns each workflow's worker pods, its pool's Redis user and worker URL."""
    applier: WorkflowApplier = field(init=False)
    advancer: Advancer = field(init=False)
    intake: ResultIntake = field(init=False)
    sides: SideBySide = field(init=False)
    _group_ready: bool = False
    _orphan_acks: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Result ids (by pool) of workflows forgotten before their status was written."""
    _deleted: list[tuple[engine.Identity, set[str]]] = field(default_factory=list)
    """Deleted workflows whose Redis keys and pool user are still to delete."""
    _lost_epoch: int = 0
    """Counts the times Redis was found without our data (new, or flushed); every tracked
    workflow re-enqueues its in-flight attempts once per such loss."""
    _output_budget: outputs.OutputBudget = field(default_factory=outputs.OutputBudget)
    """Stored-output bytes loaded for all workflows' templates together."""

    def __post_init__(self) -> None:
        self.owner = WorkerOwner(
            self.api,
            self.worker_redis_url,
            self.worker_image,
            self.users,
            self.worker_metrics_port,
            self.pool_ready,
        )
        self.applier = WorkflowApplier(self.api)
        self.intake = ResultIntake(self.results, self.applier, self.workflows)
        self.advancer = Advancer(
            self.results, self.owner, self.applier, self._output_budget, self.workflows,
            lambda: self._lost_epoch,
            lambda gone, outputs: self._let_go(gone, outputs=outputs),
            self.forget, self.jobs,
        )  # fmt: skip
        self.sides = SideBySide(self.advance, self.workflows, self.forget, self._exists)

    def track(self, body: dict[str, Any], spec: WorkflowSpec, status: WorkflowStatus) -> None:
        """Starts (or resumes, or updates) driving a valid workflow from `status` as the API
        server holds it."""
        meta = body["metadata"]
        who = engine.Identity.of(meta, status.worker_pool)
        uid = who.uid
        previous = self.workflows.get(uid)
        if previous is not None and previous.status.run_generation == status.run_generation:
            # The same run with a mutable field edited (suspend, shutdown, the deadline): this
            # driver's status is newer than the API server's (it holds what was applied and
            # enqueued since its last write), so only the spec and generation change.
            previous.spec, previous.generation = spec, meta.get("generation")
            previous.status.observed_generation = status.observed_generation
            previous.look_again()
            return
        tracked = Tracked(who, spec, status, meta.get("generation"), datetime.now(UTC))
        # The status it comes with is the API server's (a handler may be writing it now): the
        # first progress write waits its turn like any other.
        tracked.written = status.wire()
        tracked.written_at = tracked.due
        if previous is not None:
            # A run started again (its spec changed around the webhook): the new status comes
            # from the API server, and what was applied since the last write is applied again
            # (the engine ignores what is not of its run).
            tracked.ledger = previous.ledger.carried_over()
            tracked.workers.url_given = previous.workers.url_given
            tracked.requeued_epoch = previous.requeued_epoch
            self._output_budget.release(previous.outputs)
        self.workflows[uid] = tracked

    def worker_pod_gone(self, workflow_uid: str) -> None:
        """A worker pod of this workflow died or went: replace it on the next pass."""
        tracked = self.workflows.get(workflow_uid)
        if tracked is not None:
            tracked.workers.checked_at = None
            tracked.look_again()

    def tracks(self, uid: str) -> bool:
        return uid in self.workflows

    def launched(self, uid: str, task: str, item: int) -> bool:
        """Whether the engine launched this child of a forEach (it counts it in flight, or
        ended it): its next child to launch is past it."""
        tracked = self.workflows.get(uid)
        entry = tracked.status.tasks.get(task) if tracked is not None else None
        return entry is not None and item < (entry.next_item or 0)

    def request_retry(self, uid: str, target: str, resource_version: str) -> None:
        """A `treadle.dev/retry` annotation was seen: revive on the next pass."""
        tracked = self.workflows.get(uid)
        if tracked is not None and tracked.retry_requests.seen(
            RETRY_ANNOTATION, target, resource_version
        ):
            tracked.due = datetime.now(UTC)

    def forget(self, uid: str) -> None:
        gone = self.workflows.pop(uid, None)
        if gone is not None:
            self._output_budget.release(gone.outputs)
            for pool, entry in gone.ledger.abandoned():
                self._orphan_acks[pool].append(entry)

    def deleted(self, uid: str, namespace: str, used: set[str] | None = None) -> None:
        """The workflow was deleted: forget it, and delete its Redis keys, its attempts' logs
        on every pool it `used` (and its own pool's user and worker URL) on the next pass."""
        tracked = self.workflows.get(uid)
        self.forget(uid)
        if tracked is not None:
            self._deleted.append((tracked.who, tracked.pools | (used or set())))
        else:  # finished before: its logs, and a workflow with pods of its own may have keys
            who = engine.Identity.of({"uid": uid, "namespace": namespace})
            self._deleted.append((who, {who.pool} | (used or set())))

    async def execute(self, cancel: CancelToken) -> Directive:
        try:
            return await self._pass()
        except Exception:
            # Redis may have restarted without its data: make the group again next time; and
            # results this pass read but did not get to are read again (the engine ignores
            # those it applied already).
            self._group_ready = False
            self.results.read_backlog_again()
            raise

    async def _pass(self) -> Directive:
        if self._group_ready and not await self.results.intact():
            self._group_ready = False  # flushed, or a new Redis: no error need have told us
        if not self._group_ready:
            if await self.results.ensure_marker():
                self._lost_epoch += 1
                log.warning("the results stream was missing: in-flight attempts are enqueued again")
            self._group_ready = True
        await self.owner.users_again(
            lambda: [t.who for t in self.workflows.values() if not t.status.finished_at]
        )
        now = datetime.now(UTC)
        block_ms = 1000
        upcoming = [t.due for t in self.workflows.values() if t.due is not None]
        if upcoming:
            block_ms = int(max(0.0, min(1.0, (min(upcoming) - now).total_seconds())) * 1000)
        received = await self.intake.read(block_ms)
        by_workflow, ids = received.results, received.ids
        now = datetime.now(UTC)
        due = {uid for uid, t in self.workflows.items() if t.due is not None and t.due <= now}
        done, self._orphan_acks = self._orphan_acks, defaultdict(list)
        deleted, self._deleted = self._deleted, []
        try:
            await self._let_go(deleted, outputs=True, logs=True)
        except Exception:
            self._deleted[:0] = deleted
            raise
        work: list[tuple[Tracked, list[Report]]] = []
        for uid in sorted(set(by_workflow) | due):
            tracked = self.workflows.get(uid)
            if tracked is None:  # forgotten while its results were read: gone, or not ours
                for pool, entry in ids.get(uid, []):
                    done[pool].append(entry)
                continue
            tracked.ledger.received(ids.get(uid, []))
            work.append((tracked, by_workflow.get(uid, [])))
        advanced, failure = await self.sides.run(work, now)
        # Only results whose effect is in written status are acknowledged: after a crash the
        # others are read again (the engine ignores what it applied already).
        for pool, entry in advanced:
            done[pool].append(entry)
        await self.results.ack(done)
        if failure is not None:
            raise failure
        await self.intake.gauges(now)
        return Directive.proceed()

    async def _exists(self, tracked: Tracked) -> bool:
        try:
            return await kube.workflow_exists(self.api, tracked.who.namespace, tracked.who.name)
        except Exception:
            return True  # cannot tell: keep it

    async def advance(
        self, tracked: Tracked, results: list[Report], now: datetime
    ) -> list[tuple[str, str]]:
        """Advances one workflow (controllers/advance.py); returns the results (pool, entry
        id) now safe to acknowledge."""
        return await self.advancer.advance(tracked, results, now)

    async def _let_go(
        self, gone: list[tuple[engine.Identity, set[str]]], *, outputs: bool, logs: bool = False
    ) -> None:
        """Deletes finished or deleted workflows' Redis keys (on every pool they ran on), and
        the users and worker URLs of their own pools."""
        if not gone:
            return
        await self.results.forget_workflows(
            [(who.uid, pool, outputs) for who, used in gone for pool in sorted(used)], logs=logs
        )
        for who, _used in gone:
            if not who.shared:
                self.intake.asides.forget(who.pool)
        await self.owner.let_go([who for who, _used in gone])
