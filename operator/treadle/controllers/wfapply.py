"""Carries out what a workflow's step decided that the API server and the metrics see: the only
writer of a Workflow's status from the driver, and the only place its Events and counts
happen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lightkube import AsyncClient

from treadle.controllers import metrics
from treadle.controllers.tracked import Tracked
from treadle.core import engine, notices, patches
from treadle.core.messages import Report, TaskResult
from treadle.services import events, statuses


@dataclass
class WorkflowApplier:
    api: AsyncClient

    async def write(self, tracked: Tracked, wire: dict[str, Any], now: datetime) -> bool:
        """The merge patch from the status last written (only what changed); False when the
        workflow is gone."""
        change = patches.merge_patch(tracked.written, wire)
        if change:
            with metrics.STATUS_WRITE_SECONDS.time():
                written = await statuses.patch_workflow_status(
                    self.api, tracked.who.namespace, tracked.who.name, change
                )
            if not written:
                return False
        tracked.written, tracked.written_at = wire, now
        return True

    async def tell(self, tracked: Tracked, told: Iterable[notices.Notice]) -> None:
        for notice in told:
            await events.post(
                self.api, tracked.reference, notice.type, notice.reason, notice.message
            )

    @staticmethod
    def count(results: Sequence[Report], step: engine.Step) -> None:
        for result in results:
            if isinstance(result, TaskResult):
                metrics.TASK_RESULTS.labels(outcome=result.outcome).inc()
        metrics.ATTEMPTS_ENQUEUED.inc(len(step.enqueue))
        metrics.DEAD_LETTERS.inc(step.dead_lettered)
        if step.finished_now:
            metrics.WORKFLOWS_FINISHED.labels(phase=step.status.phase or "").inc()
