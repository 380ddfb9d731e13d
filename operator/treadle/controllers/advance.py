"""One workflow's advance, as gather -> step -> apply.

Gather: the results given, a manual retry asked for, workers late to start, results lost with
a broken stream, a terminate to tell the workers, the stored outputs its templates read, the
attempts in flight when Redis lost its data.  Step: the pure engine (`engine.advance`, in a
thread: it renders the tenant's templates) and the driver's pure timing (`pacing.after_step`).
Apply: enqueue what is new, keep or remove the worker pods, write status through the applier,
acknowledge only what that write records (core/ledger), tell Events, count metrics, and let go,
delete or forget a workflow that ended."""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from treadle.api import RETRY_ANNOTATION
from treadle.api.workflows import WorkflowStatus
from treadle.controllers import metrics, outputs
from treadle.controllers.jobtasks import JobTasks
from treadle.controllers.tracked import Tracked
from treadle.controllers.wfapply import WorkflowApplier
from treadle.controllers.workers import WorkerOwner
from treadle.core import engine, notices, pacing, timestamps
from treadle.core.messages import Report, TaskMessage
from treadle.runtime.offload import offload
from treadle.services import kube
from treadle.services.results import ResultStream

log = logging.getLogger(__name__)

LOST_RESULT = (
    "the results stream of the pool it ran on was found deleted or replaced (by code holding "
    "that pool's Redis user) and was made again: its result may be lost"
)

LetGo = Callable[[list[tuple[engine.Identity, set[str]]], bool], Awaitable[None]]


def _timed(call: Callable[[], engine.Step]) -> tuple[engine.Step, float]:
    """A call's result and the CPU time its thread spent on it."""
    started = time.thread_time()
    return call(), time.thread_time() - started


@dataclass
class Advancer:
    results: ResultStream
    owner: WorkerOwner
    applier: WorkflowApplier
    budget: outputs.OutputBudget
    workflows: dict[str, Tracked]
    lost_epoch: Callable[[], int]
    """How many times Redis was found without our data (each makes in-flight attempts go
    again, once per workflow)."""
    let_go: LetGo
    """Deletes ended workflows' Redis keys, pool users and worker URLs (keeping their stored
    outputs when told so)."""
    forget: Callable[[str], None]
    jobs: JobTasks | None = None
    """Makes the Jobs of `job` tasks' attempts (None: an operator without them, in tests)."""

    async def advance(
        self, tracked: Tracked, results: list[Report], now: datetime
    ) -> list[tuple[str, str]]:
        """Advances one workflow; returns the results (pool, entry id) now safe to
        acknowledge."""
        who = tracked.who
        results, current, told = await self._gather(tracked, results, now)
        # In a thread: the engine renders the tenant's templates (each bounded, and at most
        # scheduling.RENDER_SECONDS_PER_CALL of them per call), and the loop stays free for
        # every other workflow, the webhook and the probes meanwhile.  It works on its own
        # copy of status; `rendered` is this workflow's alone, advanced by one pass at a time.
        step, tracked.engine_cpu_seconds = await offload(
            _timed,
            functools.partial(
                engine.advance,
                tracked.spec,
                current,
                results,
                now=now,
                who=who,
                generation=tracked.generation,
                outputs=tracked.outputs.values,
                rendered=tracked.outputs.rendered,
                unavailable=frozenset(tracked.outputs.unloadable),
            ),
        )
        told += step.notices
        after = pacing.after_step(
            finished=step.finished,
            succeeded=step.status.phase == "Succeeded",
            wake_at=step.wake_at,
            wants_outputs=step.wants_outputs,
            own_pods=not who.shared,
            cancel_sent=tracked.cancel_sent,
            checked_at=tracked.workers.checked_at,
            written_at=tracked.written_at,
            retry_asked=tracked.retry is not None,
            retry_pending=bool(tracked.retry_requests.pending),
            ttl_seconds=tracked.spec.ttl_seconds_after_finished,
            finished_at=timestamps.parse_optional(step.status.finished_at),
            now=now,
            interval=pacing.write_interval(len(self.workflows)),
        )
        # Enqueued before the write, once each: a retried advance finds them in the ledger.
        new = set(tracked.ledger.fresh((m.key, m.attempt) for m in step.enqueue))
        await self.enqueue(tracked, [m for m in step.enqueue if (m.key, m.attempt) in new])
        tracked.ledger.enqueued_now(new)
        if after.pods == "remove":
            await self.owner.remove(who)
        elif after.pods == "ensure" and tracked.needs_workers:
            await self.owner.ensure(who, tracked.spec, tracked.workers, tracked.pools)
            tracked.workers.checked_at = now
        acked: list[tuple[str, str]] = []
        if after.write:
            if not await self.applier.write(tracked, step.wire, now):
                self.forget(who.uid)
                return []
            acked = tracked.ledger.written()
            if after.release:
                await self.let_go([(who, tracked.pools)], not after.keep_outputs)
                tracked.workers.url_given = False
                cut = pacing.cut_short(tracked.job_tasks, step.status)
                if self.jobs is not None and cut:
                    # Past its deadline its steps in flight were skipped: their pods stop too.
                    await self.jobs.cancel(who.namespace, who.uid, cut)
        else:
            tracked.ledger.applied(results)
        if tracked.retry is not None:
            await self._clear_retry(tracked)
        await self.applier.tell(tracked, told)
        self.applier.count(results, step)
        tracked.status, tracked.due = step.status, after.due
        if after.delete:
            log.info("deleting %s/%s: ttlSecondsAfterFinished passed", who.namespace, who.name)
            await kube.delete_workflow(self.applier.api, who.namespace, who.name)
        if after.delete or after.forget:
            self.forget(who.uid)
        elif tracked.retry_requests.pending and who.uid in self.workflows:
            tracked.due = now  # a retry asked for while this pass ran is carried out next
        return acked

    async def _gather(
        self, tracked: Tracked, results: list[Report], now: datetime
    ) -> tuple[list[Report], WorkflowStatus, list[notices.Notice]]:
        """The results to apply (those given, and the failures of attempts whose workers never
        started or whose results were lost), the status to apply them to (a manual retry
        revived), and what to tell."""
        who = tracked.who
        # Status replaced by the API server's lacks what was applied since the last write.
        results = tracked.ledger.to_apply(results)
        current, told = self._revive(tracked, now)
        if tracked.needs_workers:
            failures, notice = await self.owner.start_overdue(
                who, tracked.spec, current, tracked.workers, now, tracked.pools
            )
            results = [*results, *failures]
            told += [notice] if notice else []
        if tracked.lost_results:
            lost = engine.fail_in_flight(tracked.spec, current, who, LOST_RESULT)
            results += [r for r in lost if tracked.pool_of(r.task) in tracked.lost_results]
            tracked.lost_results = set()
        if tracked.spec.shutdown == "Terminate" and tracked.cancel_sent is None:
            dag = [task.name for task in tracked.spec.tasks]
            await self.results.cancel(sorted(tracked.pools), who.uid, dag, now.timestamp())
            if self.jobs is not None and tracked.has_jobs:
                await self.jobs.cancel(who.namespace, who.uid, dag)
            tracked.cancel_sent = now
        await outputs.load(
            self.results,
            who,
            tracked.spec,
            current,
            tracked.outputs,
            tracked.task_pools,
            budget=self.budget,
        )
        if tracked.requeued_epoch < self.lost_epoch():
            again = engine.requeue_in_flight(
                tracked.spec,
                tracked.status,
                now=now,
                who=who,
                outputs=tracked.outputs.values,
                rendered=tracked.outputs.rendered,
            )
            await self.enqueue(tracked, again)
            tracked.requeued_epoch = self.lost_epoch()
        return results, current, told

    def _revive(
        self, tracked: Tracked, now: datetime
    ) -> tuple[WorkflowStatus, list[notices.Notice]]:
        """The status to advance from, with a requested manual retry applied."""
        target = tracked.retry or tracked.retry_requests.take(RETRY_ANNOTATION)
        if target is None:
            return tracked.status, []
        retried = engine.manual_retry(tracked.spec, tracked.status, target, now=now)
        log.info("%s: retry %r: %s", tracked.who.name, target, retried.notice.message)
        metrics.MANUAL_RETRIES.inc(len(retried.revived))
        return retried.status, [retried.notice]

    async def _clear_retry(self, tracked: Tracked) -> None:
        who, target = tracked.who, tracked.retry
        assert target is not None
        version = await kube.clear_annotation(
            self.applier.api, who.namespace, who.name, RETRY_ANNOTATION, target
        )
        tracked.retry_requests.done(RETRY_ANNOTATION)
        tracked.retry_requests.removed(RETRY_ANNOTATION, version)

    async def enqueue(self, tracked: Tracked, messages: list[TaskMessage]) -> None:
        """Each attempt onto the task stream of the pool its task runs on, or into a Job of its
        own (a `job` task's: its result comes back on that pool's result stream)."""
        by_pool: dict[str, list[TaskMessage]] = defaultdict(list)
        own_pods: list[TaskMessage] = []
        for message in messages:
            if message.task in tracked.job_tasks:
                own_pods.append(message)
            else:
                by_pool[tracked.pool_of(message.task)].append(message)
        if own_pods:
            if self.jobs is None:
                raise RuntimeError("job tasks need the operator's JobTasks")
            await self.jobs.launch(own_pods, tracked)
        for pool, batch in sorted(by_pool.items()):
            await self.results.enqueue(pool, batch)
