"""The owner of worker pods: each running workflow's dedicated pods, its pool's Redis user and
worker URL (made before the first pod needs them), and the start timeout (SPEC: attempts never
wait for ever for a worker that cannot start).  A workflow on a WorkerPool has no pods of its
own: the pool keeper (treadle.controllers.pools) keeps the pool's, and tells how many are
ready."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from lightkube import AsyncClient

from treadle.api.workflows import WorkflowSpec, WorkflowStatus
from treadle.core import engine, notices, workerpods
from treadle.core.messages import TaskResult
from treadle.core.pools import is_shared, pool_name
from treadle.services import kube, pool_users
from treadle.services.pool_users import PoolUsers

log = logging.getLogger(__name__)

PoolReadiness = Callable[[str], tuple[int, str | None]]
"""A WorkerPool's ready workers by pool id, and why there are none when there are none."""


def no_pools(pool: str) -> tuple[int, str | None]:
    """Readiness when no pool keeper runs: no WorkerPool has workers."""
    return 0, f"WorkerPool {pool_name(pool)!r} is not served by this operator"


@dataclass
class WorkerState:
    """What the owner knows of one workflow's workers."""

    checked_at: datetime | None = None
    """When its pods were last looked at (None: look at the next advance)."""
    ready: int = 0
    """Pods found ready then."""
    waiting_since: datetime | None = None
    """Since when no pod has been ready (None: one is, or no look yet)."""
    problem: str | None = None
    """Why a pod is not starting, as the last look found it."""
    url_given: bool = False
    """Whether the pool's worker URL is in the namespace's Secret."""


@dataclass
class WorkerOwner:
    api: AsyncClient
    worker_redis_url: str
    """Where workers reach Redis; with pool users, the user and password are the pool's."""
    worker_image: str
    users: PoolUsers | None = None
    """Makes each pool's Redis user; None: workers get `worker_redis_url` as it is."""
    metrics_port: int = 0
    pool_ready: PoolReadiness = no_pools

    async def ensure(
        self,
        who: engine.Identity,
        spec: WorkflowSpec,
        state: WorkerState,
        pools: Iterable[str] = (),
    ) -> None:
        """The pool's user and URL, then `spec.workers.replicas` pods (a gone one replaced);
        on WorkerPools (`pools`: every one its tasks use), how many of their workers are ready
        (the fewest of any)."""
        shared = sorted(pool for pool in {who.pool, *pools} if is_shared(pool))
        if shared:
            looks = [self.pool_ready(pool) for pool in shared]
            state.ready, state.problem = min(looks, key=lambda look: look[0])
            if who.shared:
                self._waited(state, None)
                return
        await self._give_url(who, state)
        workers = spec.workers
        refs = engine.secret_refs(spec)
        pods = [
            workerpods.workflow_pod(
                workflow_name=who.name,
                namespace=who.namespace,
                uid=who.uid,
                pool=who.pool,
                index=index,
                spec=workers,
                default_image=self.worker_image,
                metrics_port=self.metrics_port,
                secret_refs=refs,
            )
            for index in range(workers.replicas)
        ]
        found = await kube.ensure_worker_pods(self.api, pods)
        if found.created:
            log.info("created %d worker pod(s) for %s/%s", found.created, who.namespace, who.name)
        if not shared:
            state.ready, state.problem = found.ready, found.problem
        elif not found.ready:
            state.ready, state.problem = 0, found.problem
        self._waited(state, found.oldest)

    @staticmethod
    def _waited(state: WorkerState, oldest: datetime | None) -> None:
        if state.ready:
            state.waiting_since = None
        elif state.waiting_since is None:
            state.waiting_since = oldest or datetime.now(UTC)

    async def _give_url(self, who: engine.Identity, state: WorkerState) -> None:
        """Makes the pool's Redis user again (Redis keeps none over a restart) and, once per
        run, puts the pool's worker URL in the namespace's Secret."""
        url = await pool_users.ensured_url(
            self.users, self.worker_redis_url, who.pool, who.namespace
        )
        if not state.url_given:
            await kube.put_worker_url(self.api, who.namespace, who.pool, url)
            state.url_given = True

    async def start_overdue(
        self,
        who: engine.Identity,
        spec: WorkflowSpec,
        status: WorkflowStatus,
        state: WorkerState,
        now: datetime,
        pools: Iterable[str] = (),
    ) -> tuple[list[TaskResult], notices.Notice | None]:
        """Failures of the attempts in flight when no worker pod started within
        `spec.workers.startTimeoutSeconds`; the clock starts again for their retries.  The pods
        are looked at once more first: for the reason they give now, and in case one just
        became ready."""
        timeout = spec.workers.start_timeout_seconds

        def overdue() -> bool:
            return engine.start_overdue(
                in_flight=True,
                ready_workers=state.ready,
                waiting_since=state.waiting_since,
                now=now,
                timeout_seconds=timeout,
            )

        if not overdue():
            return [], None
        await self.ensure(who, spec, state, pools)
        state.checked_at = now
        if not overdue():
            return [], None
        state.waiting_since = now
        error = f"no worker started within {timeout} s: {state.problem or 'worker pods not ready'}"
        failures = engine.fail_in_flight(spec, status, who, error, workers_only=True)
        if not failures:
            return [], None
        log.warning("%s/%s: %s", who.namespace, who.name, error)
        return failures, notices.Notice("Warning", "WorkersNotStarting", error)

    async def remove(self, who: engine.Identity) -> None:
        """A finished workflow's pods go (its pool's user and URL go with its Redis keys)."""
        if not who.shared:
            await kube.delete_worker_pods(self.api, who.namespace, who.name)

    async def let_go(self, gone: list[engine.Identity]) -> None:
        """The users and worker URLs of workflows' own pools that are gone (a WorkerPool's
        stay while the pool does)."""
        own = [who for who in gone if not who.shared]
        if self.users is not None:
            await self.users.drop([who.pool for who in own])
        for who in own:
            await kube.drop_worker_url(self.api, who.namespace, who.pool)

    async def users_again(self, running: Callable[[], Iterable[engine.Identity]]) -> None:
        """After a Redis restart, every running pool's user at once (its workers wait);
        `running` is asked only then."""
        if self.users is not None and await self.users.restarted():
            log.warning("Redis restarted: making the pools' users again")
            for who in running():
                if not who.shared:
                    await self.users.ensure(who.pool, who.namespace)
