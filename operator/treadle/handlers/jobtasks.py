"""The Jobs of `job` tasks' attempts and their pods, as the watch sees them, go to the
operator's JobTasks (controllers/jobtasks.py), which judges them and reports their ends.  Only
objects carrying Treadle's label are watched; one carrying it that Treadle did not make is
dropped there (its claim is not signed)."""

from __future__ import annotations

from typing import Any

import kopf

from treadle.core import jobs
from treadle.handlers.registry import registry


@kopf.on.event("batch", "v1", "jobs", labels={jobs.JOB_TASK_LABEL: "true"}, registry=registry)
async def task_job_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    tasks = getattr(memo, "jobtasks", None)
    if tasks is not None:
        tasks.job_changed(body, gone=type == "DELETED")


@kopf.on.event("v1", "pods", labels={jobs.JOB_TASK_LABEL: "true"}, registry=registry)
async def task_pod_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    tasks = getattr(memo, "jobtasks", None)
    if tasks is not None:
        tasks.pod_changed(body, gone=type == "DELETED")
