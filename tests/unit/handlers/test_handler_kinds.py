"""Handlers that change the driver's or the scheduler's state run on the event loop."""

from __future__ import annotations

import inspect

from treadle.handlers import pods, syncjobs, workflows

STATEFUL = [
    workflows.admit_workflow,
    workflows.retry_requested,
    workflows.workflow_gone,
    pods.worker_pod_changed,
    syncjobs.admit_syncjob,
    syncjobs.syncjob_requested,
    syncjobs.syncjob_gone,
    syncjobs.run_changed,
]


def test_handlers_that_touch_the_driver_or_scheduler_are_coroutines() -> None:
    # kopf runs plain functions in a thread pool: they would change the driver's dicts while
    # its loop iterates them.
    assert [h.__name__ for h in STATEFUL if not inspect.iscoroutinefunction(h)] == []
