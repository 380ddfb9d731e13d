"""What a driver pass takes in from Redis: the results waiting on the streams of the pools that
serve unfinished workflows (drained up to MAX_PER_PASS), grouped by workflow; streams found
broken and repaired (their workflows' in-flight attempts fail and go again); entries set aside
(a Warning on each workflow served there, at most once a minute); and the queue gauges."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from treadle.controllers import metrics
from treadle.controllers.tracked import Tracked
from treadle.controllers.wfapply import WorkflowApplier
from treadle.core.asides import AsideNotices
from treadle.core.messages import Report
from treadle.services.keys import REJECTED
from treadle.services.results import ResultStream

BATCH = 1000
MAX_PER_PASS = 20_000
GAUGE_SECONDS = 15.0

Served = dict[str, dict[str, Collection[str] | None]]


@dataclass
class Received:
    """A pass's results: by workflow, and their ids (pool, entry id) by workflow."""

    results: dict[str, list[Report]] = field(default_factory=lambda: defaultdict(list))
    ids: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class ResultIntake:
    results: ResultStream
    applier: WorkflowApplier
    workflows: dict[str, Tracked]
    asides: AsideNotices = field(default_factory=AsideNotices)
    """When each pool's workflows were last told of entries set aside."""
    gauges_at: datetime | None = None

    async def read(self, block_ms: int) -> Received:
        """Reads what is waiting (blocking up to `block_ms` for the first), and takes in the
        streams repaired and the entries set aside meanwhile."""
        set_aside = self.results.set_aside
        served = self.served()
        read = await self.results.read(served, BATCH, max(1, block_ms))
        # Drain what is already there (up to MAX_PER_PASS) so one pass applies it all.
        while read and len(read) % BATCH == 0 and len(read) < MAX_PER_PASS:
            more = await self.results.read(served, BATCH, 1)
            if not more:
                break
            read += more
        if self.results.set_aside > set_aside:
            metrics.RESULTS_SET_ASIDE.inc(self.results.set_aside - set_aside)
        if self.results.repairs:
            metrics.STREAMS_REPAIRED.inc(len(self.results.repairs))
            self.results.repairs.clear()
        await self.lost_results(datetime.now(UTC))
        await self.tell_asides(served)
        received = Received()
        for entry in read:
            received.results[entry.result.workflow_uid].append(entry.result)
            received.ids[entry.result.workflow_uid].append((entry.pool, entry.id))
        return received

    def served(self) -> Served:
        """The pools whose results to read, with the workflows each serves and the tasks it
        runs for each: those of the unfinished workflows (a finished one's own pool and
        streams are gone)."""
        served: Served = defaultdict(dict)
        for uid, tracked in self.workflows.items():
            if not tracked.status.finished_at:
                for pool, tasks in tracked.served.items():
                    served[pool][uid] = tasks
        return served

    async def lost_results(self, now: datetime) -> None:
        """Pools whose results stream was broken (its workers' user deleted or replaced it)
        and repaired: their workflows forget their records of outcomes there, so that the
        attempts in flight, failed on their next advance, run again when retried."""
        lost, self.results.lost_results = self.results.lost_results, set()
        for pool in sorted(lost):
            hit = [t for t in self.workflows.values() if pool in t.served]
            await self.results.forget_outcomes(pool, [t.who.uid for t in hit])
            for tracked in hit:
                tracked.lost_results.add(pool)
                tracked.due = now

    async def tell_asides(self, served: Served) -> None:
        """A Warning Event on each workflow whose pool's result stream had entries set aside."""
        asides, self.results.asides = self.results.asides, []
        by_pool: dict[str, list[str]] = defaultdict(list)
        for pool, reason in asides:
            by_pool[pool].append(reason)
        now = datetime.now(UTC)
        for pool, reasons in by_pool.items():
            notice = self.asides.record(pool, reasons, now, stream=REJECTED)
            if notice is None:
                continue
            for uid in served.get(pool, ()):
                tracked = self.workflows.get(uid)
                if tracked is not None:  # else deleted while this pass read
                    await self.applier.tell(tracked, [notice])

    async def gauges(self, now: datetime) -> None:
        """The queue gauges, at most every GAUGE_SECONDS."""
        if self.gauges_at is not None and now - self.gauges_at < timedelta(seconds=GAUGE_SECONDS):
            return
        self.gauges_at = now
        depth = await self.results.depth(
            sorted({pool for t in self.workflows.values() for pool in t.pools})
        )
        metrics.QUEUE_MESSAGES.labels(state="waiting").set(depth.waiting)
        metrics.QUEUE_MESSAGES.labels(state="in_flight").set(depth.in_flight)
        metrics.QUEUE_MESSAGES.labels(state="results").set(depth.results)
        metrics.POISON_MESSAGES.set(depth.poison)
        metrics.TRACKED_WORKFLOWS.set(len(self.workflows))
