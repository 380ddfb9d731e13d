"""The pool keeper: keeps each WorkerPool's Redis user, worker URL and Deployment, scales the
Deployment on the pool's backlog, and writes the pool's status (SPEC, Worker pools).

It runs as one loop of the worker runtime beside kopf, looking at every pool each
LOOK_SECONDS: one Redis round trip for all pools' loads, then per pool a read of its
Deployment, a write only when the Deployment or the status should change.  The kopf handlers
(treadle.handlers.pools) tell it which pools exist; the engine driver asks it how many workers
of a pool are ready (for the start timeout of the attempts waiting on them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lightkube import ApiError, AsyncClient

from treadle.api.base import Condition
from treadle.api.pools import WorkerPoolSpec
from treadle.controllers import metrics
from treadle.core import conditions, patches
from treadle.core import pools as decide
from treadle.runtime import CancelToken, Directive
from treadle.services import kube, pool_deployments, pool_users
from treadle.services.pool_users import PoolUsers
from treadle.services.results import ResultStream

log = logging.getLogger(__name__)

LOOK_SECONDS = 2.0
"""How often each pool's backlog and Deployment are looked at (a burst waits at most this long
for the pool to grow)."""
USERS_EVERY = timedelta(seconds=30)
"""How often a pool's Redis user is made again, and its URL put in the namespace's Secret
again, even when no Redis restart was seen."""
CONCURRENCY = 16


@dataclass
class KeptPool:
    """What the keeper knows of one pool."""

    name: str
    namespace: str
    uid: str
    spec: WorkerPoolSpec | None
    """None: the spec is refused (`problem` says why); nothing of the pool runs."""
    generation: int | None
    conditions: list[Condition] = field(default_factory=list)
    problem: str | None = None
    replicas: int | None = None
    """The size last given to the Deployment."""
    low_since: datetime | None = None
    applied: dict[str, Any] | None = None
    """The Deployment manifest last applied."""
    rollout: decide.Rollout = field(default_factory=decide.Rollout)
    written: dict[str, Any] | None = None
    """The status last written."""
    user_at: datetime | None = None
    """When its Redis user was last made."""
    url_given: bool = False
    """Whether its worker URL is in the namespace's Secret."""
    url_digest: str = ""
    """A digest of that URL, on the pod template (a moved Redis rolls the workers)."""

    @property
    def id(self) -> str:
        return decide.shared_pool(self.namespace, self.name)


@dataclass
class PoolKeeper:
    api: AsyncClient
    results: ResultStream
    worker_redis_url: str
    worker_image: str
    users: PoolUsers | None = None
    metrics_port: int = 0
    pools: dict[str, KeptPool] = field(default_factory=dict)
    _gone: list[KeptPool] = field(default_factory=list)

    def track(
        self,
        meta: dict[str, Any],
        spec: WorkerPoolSpec | None,
        problem: str | None,
        status: dict[str, Any],
    ) -> None:
        """A pool was made, changed or seen again at a start: looked at on the next pass."""
        name, namespace = str(meta["name"]), str(meta["namespace"])
        pool = decide.shared_pool(namespace, name)
        kept = self.pools.get(pool)
        found = conditions.parse(status.get("conditions"))
        if kept is None or kept.uid != meta.get("uid"):
            kept = KeptPool(name, namespace, str(meta.get("uid")), spec, meta.get("generation"))
            kept.conditions = found
            self.pools[pool] = kept
        kept.spec, kept.problem, kept.generation = spec, problem, meta.get("generation")

    def forget(self, namespace: str, name: str) -> None:
        """A pool was deleted: its user and worker URL go on the next pass (its Deployment
        goes with it, as the pool owns it)."""
        kept = self.pools.pop(decide.shared_pool(namespace, name), None)
        if kept is not None:
            self._gone.append(kept)

    def specs(self, namespace: str) -> dict[str, WorkerPoolSpec]:
        """The valid pools of a namespace by name, as last seen."""
        return {
            kept.name: kept.spec
            for kept in self.pools.values()
            if kept.namespace == namespace and kept.spec is not None
        }

    def ready(self, pool: str) -> tuple[int, str | None]:
        """Ready workers of a pool, and why there are none when there are none."""
        kept = self.pools.get(pool)
        name = decide.pool_name(pool)
        if kept is None:
            return 0, f"WorkerPool {name!r} does not exist"
        if kept.spec is None:
            return 0, f"WorkerPool {name!r} is invalid: {kept.problem}"
        if kept.rollout.ready:
            return kept.rollout.ready, None
        why = kept.rollout.theirs or kept.rollout.stalled or "no worker pod ready yet"
        return 0, f"WorkerPool {name!r}: {why}"

    async def execute(self, cancel: CancelToken) -> Directive:
        await self._let_go()
        if self.users is not None and await self.users.restarted():
            log.warning("Redis restarted: making the WorkerPools' users again")
            for kept in self.pools.values():
                kept.user_at = None
        kept_pools = list(self.pools.values())
        loads = await self.results.loads([kept.id for kept in kept_pools])
        slots = asyncio.Semaphore(CONCURRENCY)
        now = datetime.now(UTC)

        async def one(kept: KeptPool) -> None:
            async with slots:
                try:
                    await self._look(kept, loads[kept.id], now)
                except ApiError as error:  # e.g. its namespace is being deleted
                    log.warning("WorkerPool %s/%s: %s", kept.namespace, kept.name, error)
                except Exception:
                    log.exception("WorkerPool %s/%s: look failed", kept.namespace, kept.name)

        await asyncio.gather(*(one(kept) for kept in kept_pools))
        return Directive.sleep(LOOK_SECONDS)

    async def _look(self, kept: KeptPool, load: decide.Load, now: datetime) -> None:
        spec = kept.spec
        if spec is None:
            status = decide.invalid_status(
                kept.conditions, kept.problem or "invalid", generation=kept.generation, now=now
            )
            await self._write(kept, status.wire())
            return
        if kept.user_at is None or now - kept.user_at >= USERS_EVERY:
            kept.url_given = False  # put again too: a Secret edited or deleted heals
            await self._give_url(kept)
            kept.user_at = now
        current = kept.replicas if kept.replicas is not None else spec.replicas.min
        scaling = decide.scale(spec, current=current, load=load, low_since=kept.low_since, now=now)
        kept.low_since = scaling.low_since
        manifest = decide.deployment(
            name=kept.name,
            namespace=kept.namespace,
            uid=kept.uid,
            spec=spec,
            replicas=scaling.replicas,
            default_image=self.worker_image,
            metrics_port=self.metrics_port,
            url_digest=kept.url_digest,
        )
        if manifest != kept.applied:
            if kept.replicas is not None and scaling.replicas != kept.replicas:
                log.info(
                    "WorkerPool %s/%s: %d -> %d workers (%d queued, %d running)",
                    kept.namespace,
                    kept.name,
                    kept.replicas,
                    scaling.replicas,
                    load.backlog,
                    load.running,
                )
            kept.rollout = await pool_deployments.apply(self.api, manifest, kept.uid)
            kept.applied = None if kept.rollout.theirs else manifest
            kept.replicas = scaling.replicas
        else:
            found = await pool_deployments.look(
                self.api, kept.namespace, manifest["metadata"]["name"], kept.uid
            )
            if found is None:  # deleted under us: made again on the next look
                kept.applied = None
            kept.rollout = found or decide.Rollout()
        status = decide.pool_status(
            spec,
            kept.conditions,
            name=kept.name,
            replicas=scaling.replicas,
            rollout=kept.rollout,
            load=load,
            generation=kept.generation,
            now=now,
        )
        labels = {"namespace": kept.namespace, "pool": kept.name}
        metrics.POOL_BACKLOG.labels(**labels).set(load.backlog)
        metrics.POOL_RUNNING.labels(**labels).set(load.running)
        metrics.POOL_REPLICAS.labels(**labels, state="wanted").set(scaling.replicas)
        metrics.POOL_REPLICAS.labels(**labels, state="ready").set(kept.rollout.ready)
        await self._write(kept, status.wire())

    async def _write(self, kept: KeptPool, wire: dict[str, Any]) -> None:
        change = patches.merge_patch(kept.written or {}, wire)
        if kept.written is not None and not change:
            return
        if await pool_deployments.patch_status(self.api, kept.namespace, kept.name, change):
            kept.written = wire
            kept.conditions = conditions.parse(wire.get("conditions"))

    async def _give_url(self, kept: KeptPool) -> None:
        """The pool's Redis user (made again: Redis keeps none over a restart) and its worker
        URL in the namespace's Secret."""
        url = await pool_users.ensured_url(
            self.users, self.worker_redis_url, kept.id, kept.namespace
        )
        if not kept.url_given:
            await kube.put_worker_url(self.api, kept.namespace, kept.id, url)
            kept.url_given = True
            kept.url_digest = hashlib.sha256(url.encode()).hexdigest()[:16]

    async def _let_go(self) -> None:
        gone, self._gone = self._gone, []
        for kept in gone:
            try:
                if self.users is not None:
                    await self.users.drop([kept.id])
                await kube.drop_worker_url(self.api, kept.namespace, kept.id)
            except Exception:
                self._gone.append(kept)
                raise
            with contextlib.suppress(KeyError):
                metrics.POOL_BACKLOG.remove(kept.namespace, kept.name)
                metrics.POOL_RUNNING.remove(kept.namespace, kept.name)
                for state in ("wanted", "ready"):
                    metrics.POOL_REPLICAS.remove(kept.namespace, kept.name, state)
