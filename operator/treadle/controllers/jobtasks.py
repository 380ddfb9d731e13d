"""`job` tasks: each attempt a batch/v1 Job of its own, made when the driver enqueues it, and
its end published on its pool's result stream as a worker's would be, so that the driver
applies it like any result (ack after the status write, duplicates dropped by the attempt's
idempotency record).

The Jobs and their pods come from the operator's watch (handlers/jobtasks.py); `run` judges each
Job that changed (core/jobs.judge) and reports: a start once its pod runs, its end with the
output read from the pod's log.  A Job is marked reported after its end is published, so a
restarted operator reads no log twice; one published twice is dropped by the record of
outcomes.  A Job that Treadle did not make (its claim is not signed with the operator's key) is
never reported, and never adopted in place of an attempt's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from lightkube import ApiError, AsyncClient

from treadle.controllers.tracked import Tracked
from treadle.core import actions, jobs
from treadle.core.messages import WORKER_NAME_LIMIT, TaskMessage, TaskResult, TaskStart
from treadle.services import taskjobs
from treadle.services.keys import PREFIX
from treadle.services.queues import Delivery, TaskQueue

log = logging.getLogger(__name__)

SIGNING_KEY = f"{PREFIX}:operator:job-signing-key"
"""The key Jobs' claims are signed with: the operator's own (no pool's Redis user reaches it)."""
LOOK_AGAIN_SECONDS = 2.0
"""How often Jobs whose pods have not started (or whose workflows are not yet tracked) are
judged again."""
UNTRACKED_SECONDS = 600.0
"""How long a Job whose workflow the driver does not track is looked at again (an operator
starting tracks its workflows within seconds; an ended workflow's Jobs are left alone)."""
HELD_BACK_SECONDS = 0.05
"""How soon a child's end kept back (its launch not yet counted by the engine) is tried again."""
CREATE_CONCURRENCY = 16
ERROR_LOG_TAIL = 500

Where = tuple[str, str]
"""(namespace, Job name)."""


def _slim_job(body: Mapping[str, Any]) -> dict[str, Any]:
    """What judging and reporting need of a Job (a watch holds thousands)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    return {
        "metadata": {
            k: meta.get(k)
            for k in ("name", "namespace", "labels", "annotations", "creationTimestamp")
        },
        "spec": {k: spec.get(k) for k in ("suspend", "activeDeadlineSeconds")},
        "status": {"conditions": status.get("conditions") or []},
    }


def _slim_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    index = (meta.get("annotations") or {}).get(jobs.INDEX)
    return {
        "metadata": {
            **{k: meta.get(k) for k in ("name", "creationTimestamp", "deletionTimestamp")},
            "annotations": {jobs.INDEX: index} if index is not None else {},
        },
        "spec": {"nodeName": (body.get("spec") or {}).get("nodeName")},
        "status": {
            k: status.get(k)
            for k in ("phase", "reason", "message", "startTime", "conditions", "containerStatuses")
        },
    }


class JobTasks:
    """Makes `job` tasks' Jobs and reports how they went."""

    def __init__(
        self,
        api: AsyncClient,
        client: aioredis.Redis,
        key: bytes,
        tracks: Callable[[str], bool],
        launched: Callable[[str, str, int], bool],
    ) -> None:
        self.api = api
        self.client = client
        self.key = key
        self.tracks = tracks
        """Whether the driver drives the workflow of this uid (a result for one it does not
        is kept back until it does, or its Job goes)."""
        self.launched = launched
        """Whether the driver's engine launched this child of a forEach (uid, task, index): an
        Indexed Job may run a child before the engine counts it in flight, and its end is
        kept back until it does (else the engine would drop it as a straggler)."""
        self.made: set[Where] = set()
        """Indexed Jobs made (or found made): a child's launch asks for no second create."""
        self.gone: set[Where] = set()
        """Indexed Jobs deleted before they ended: their children's first attempts then run
        as Jobs of their own (never a second Indexed Job rerunning every child)."""
        self.items_done: dict[Where, set[int]] = defaultdict(set)
        """Children of each Indexed Job whose ends are published."""
        self.hurry = False
        self.untracked: dict[Where, float] = {}
        """Jobs whose workflows the driver does not track, since when (monotonic)."""
        self.jobs: dict[Where, dict[str, Any]] = {}
        self.claims: dict[Where, jobs.Claim | None] = {}
        """Each Job's claim, read (and its signature checked) once per change of the Job."""
        self.pods: dict[Where, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.dirty: set[Where] = set()
        self.again: set[Where] = set()
        self.reported: set[Where] = set()
        self.told: dict[Where, str] = {}
        """What each Job's attempt was last said to be doing (its pod, or why it waits)."""
        self.wake = asyncio.Event()
        self.queues: dict[str, TaskQueue] = {}
        self.reports = 0

    @classmethod
    async def start(
        cls,
        api: AsyncClient,
        client: aioredis.Redis,
        tracks: Callable[[str], bool],
        launched: Callable[[str, str, int], bool],
    ) -> JobTasks:
        await client.set(SIGNING_KEY, secrets.token_hex(32), nx=True)
        key = await client.get(SIGNING_KEY)
        return cls(api, client, str(key).encode(), tracks, launched)

    # -- the driver's side -------------------------------------------------------------------

    async def launch(self, messages: Sequence[TaskMessage], tracked: Tracked) -> None:
        """Makes the Job of each attempt: the first attempts of a forEach whose job does not
        depend on its item share one Indexed Job; every other attempt has one of its own.  An
        attempt that cannot have its Job (a Job of that name that Treadle did not make stands
        in the way) fails, on its pool's result stream."""
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)
        who = tracked.who
        told: dict[str, str | None] = {}
        """Each Indexed Job's items as JSON, made once per call (a launch of 10,000 children
        asks for one Job)."""

        async def one(message: TaskMessage) -> TaskResult | None:
            spec = actions.own_pod_action(message.action)
            if spec is None:
                return None
            kept = tracked.outputs.rendered.get(message.task)
            values = kept[1] if kept is not None else None
            indexed, items = None, None
            if message.attempt == 1 and message.task in tracked.indexed_tasks and values:
                first = dataclasses.replace(message, item=None)
                where = (who.namespace, jobs.job_name(first))
                if where in self.made:
                    return None
                if where not in self.gone:
                    indexed = (len(values), min(tracked.spec.concurrency, len(values)))
                    if message.task not in told:
                        told[message.task] = _json_within(values)
                    items = told[message.task]
            if indexed is None and values is not None and message.item is not None:
                items = _json_within(values[message.item])
            body = jobs.job_body(
                message,
                spec,
                pool=tracked.pool_of(message.task),
                owner_uid=who.uid,
                key=self.key,
                deadline_seconds=math.ceil(message.timeout_seconds),
                indexed=indexed,
                items=items,
            )
            where = (who.namespace, str(body["metadata"]["name"]))
            try:
                async with gate:
                    found = await taskjobs.create(self.api, body)
            except ApiError as refusing:
                refused = taskjobs.refusal(refusing)
                if refused is None:
                    raise  # the API server away or busy: the advance is tried again
                return message.failure(f"the API server refused its Job: {refused}", time.time())
            if indexed is not None:
                self.made.add(where)
            if found is None:
                return None
            claim = jobs.read_claim(found, self.key)
            if claim is not None and (claim.workflow_uid, claim.attempt) == (
                message.workflow_uid,
                message.attempt,
            ):
                # Made before (an advance retried, Redis lost its data): report it again.
                self.reported.discard(where)
                self.items_done.pop(where, None)
                self._touch(where)
                return None
            self.made.discard(where)
            name = where[1]
            error = f"a Job named {name!r} exists that Treadle did not make"
            return message.failure(error, time.time())

        failures = [f for f in await asyncio.gather(*(one(m) for m in messages)) if f]
        for failure in failures:
            await self.publish(tracked.pool_of(failure.task), [failure])

    async def cancel(self, namespace: str, workflow_uid: str, tasks: Collection[str]) -> None:
        """Deletes a workflow's running Jobs of `tasks`: a terminated workflow's DAG tasks (not
        its exit tasks), or every task of one that ended with some still running (past its
        deadline)."""
        deleted = await taskjobs.delete_running(self.api, namespace, workflow_uid, tasks)
        if deleted:
            log.info("deleted %d running Job(s) of a workflow in %s", deleted, namespace)

    # -- the watch's side --------------------------------------------------------------------

    def job_changed(self, body: Mapping[str, Any], gone: bool) -> None:
        meta = body.get("metadata") or {}
        where = (str(meta.get("namespace")), str(meta.get("name")))
        if gone:
            job = self.jobs.get(where)
            self.made.discard(where)
            if job is not None and where not in self.reported:
                job["gone"] = True
                claim = self.claims.get(where)
                if claim is not None and claim.completions is not None:
                    self.gone.add(where)
                self._touch(where)
            else:
                self._forget(where)
            return
        self.jobs[where] = _slim_job(body)
        self.claims[where] = jobs.read_claim(body, self.key)
        if (meta.get("annotations") or {}).get(jobs.REPORTED_ANNOTATION):
            self.reported.add(where)
        self._touch(where)

    def pod_changed(self, body: Mapping[str, Any], gone: bool) -> None:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
        if not job:
            return
        where = (str(meta.get("namespace")), str(job))
        if gone:
            self.pods[where].pop(str(meta.get("name")), None)
        else:
            self.pods[where][str(meta.get("name"))] = _slim_pod(body)
        self._touch(where)

    def _touch(self, where: Where) -> None:
        self.dirty.add(where)
        self.wake.set()

    def _forget(self, where: Where) -> None:
        self.jobs.pop(where, None)
        self.claims.pop(where, None)
        self.pods.pop(where, None)
        self.reported.discard(where)
        self.again.discard(where)
        self.items_done.pop(where, None)
        self.told.pop(where, None)
        self.untracked.pop(where, None)
        self.made.discard(where)

    async def run(self) -> None:
        """Judges the Jobs that changed (and those waiting to start) until cancelled."""
        while True:
            wait = HELD_BACK_SECONDS if self.hurry else LOOK_AGAIN_SECONDS
            self.hurry = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait)
            self.wake.clear()
            due = self.dirty | self.again
            self.dirty, self.again = set(), set()
            for where in sorted(due):
                try:
                    await self.settle(where)
                except Exception:  # one Job's trouble costs no other: it is looked at again
                    log.exception("judging Job %s/%s", *where)
                    self.again.add(where)

    async def settle(self, where: Where, now: datetime | None = None) -> None:
        job = self.jobs.get(where)
        if job is None or where in self.reported:
            if job is not None and not job.get("gone"):
                self.pods.pop(where, None)  # reported: its pods are no longer looked at
            return
        claim = self.claims.get(where)
        if claim is None:
            self._forget(where)
            return
        if not self.tracks(claim.workflow_uid):
            # Not yet tracked (the operator is starting), or ended and let go: looked at
            # again for a while, then only when the Job changes.
            since = self.untracked.setdefault(where, time.monotonic())
            if job.get("gone") or time.monotonic() - since > UNTRACKED_SECONDS:
                self._forget(where)
            else:
                self.again.add(where)
            return
        self.untracked.pop(where, None)
        now = now or datetime.now(UTC)
        if claim.completions is not None:
            await self._settle_indexed(where, claim, job, now)
            return
        if job.get("gone"):
            judged = jobs.GONE
        else:
            judged = jobs.judge(
                job,
                list(self.pods.get(where, {}).values()),
                start_timeout_seconds=claim.start_timeout_seconds,
                now=now,
            )
        if judged.verdict == "running" and judged.pod is not None:
            await self._announce(where, claim, judged)
        elif judged.verdict in ("succeeded", "failed"):
            await self._report(where, claim, judged)
        elif judged.message is not None:  # suspended, or a pod not starting yet
            await self._announce(where, claim, judged, waiting=judged.message)
            if judged.verdict == "pending":
                self.again.add(where)

    async def _announce(
        self, where: Where, claim: jobs.Claim, judged: jobs.Judgement, waiting: str | None = None
    ) -> None:
        """Tells the driver the attempt began on its pod (once), or why it has not yet (once
        per reason)."""
        marker = f"{judged.pod}\n{waiting or ''}"
        if self.told.get(where) == marker:
            return
        worker = _worker(judged) if judged.pod else "(no pod yet)"
        start = TaskStart.of(
            claim.message(claim.item, claim.attempt), worker, judged.started_at or time.time()
        )
        if waiting:
            start = dataclasses.replace(start, waiting=waiting[:WORKER_NAME_LIMIT])
        await self._queue(claim.pool).announce([start])
        self.told[where] = marker

    async def _report(self, where: Where, claim: jobs.Claim, judged: jobs.Judgement) -> None:
        namespace, name = where
        result = await self._result(namespace, claim, judged, claim.item, claim.attempt)
        await self.publish(claim.pool, [result])
        if judged.stop:
            await taskjobs.delete(self.api, namespace, name)
        if not self.jobs[where].get("gone"):
            await taskjobs.mark_reported(self.api, namespace, name, judged.verdict)
        self.reported.add(where)
        self.pods.pop(where, None)
        self.told.pop(where, None)
        self.reports += 1

    async def _settle_indexed(
        self, where: Where, claim: jobs.Claim, job: Mapping[str, Any], now: datetime
    ) -> None:
        """Reports each child of an Indexed Job that ended (and was launched by the engine),
        once; the Job is marked reported when every child's end is published."""
        namespace, name = where
        assert claim.completions is not None
        done = self.items_done[where]
        groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for pod in self.pods.get(where, {}).values():
            index = jobs.index_of(pod)
            if index is not None and index not in done:
                groups[index].append(pod)
        ended: list[tuple[int, jobs.Judgement]] = []
        for index in range(claim.completions) if job.get("gone") else sorted(groups):
            if index in done:
                continue
            if job.get("gone") and not groups.get(index):
                judged = jobs.GONE
            else:
                judged = jobs.judge_child(
                    groups[index], start_timeout_seconds=claim.start_timeout_seconds, now=now
                )
            if judged.verdict not in ("succeeded", "failed"):
                if judged.verdict == "pending" and judged.message:
                    self.again.add(where)
                continue
            if not self.launched(claim.workflow_uid, claim.task, index):
                self.again.add(where)
                self.hurry = True
                continue
            ended.append((index, judged))
        queue = self._queue(claim.pool)
        child = [claim.message(index, 1) for index, _ in ended]
        known = await queue.recorded(child) if child else []
        results = []
        for (index, judged), seen in zip(ended, known, strict=True):
            if not seen:
                results.append(await self._result(namespace, claim, judged, index, 1))
            done.add(index)
            if judged.stop and judged.pod is not None:
                await taskjobs.delete_pod(self.api, namespace, judged.pod)
        if results:
            await self.publish(claim.pool, results)
            self.reports += len(results)
        for pod_name, pod in list(self.pods.get(where, {}).items()):
            if jobs.index_of(pod) in done:
                del self.pods[where][pod_name]
        if len(done) >= claim.completions:
            if not job.get("gone"):
                await taskjobs.mark_reported(self.api, namespace, name, "ended")
            self.reported.add(where)
            self.items_done.pop(where, None)
            self.made.discard(where)

    async def _result(
        self,
        namespace: str,
        claim: jobs.Claim,
        judged: jobs.Judgement,
        item: int | None,
        attempt: int,
    ) -> TaskResult:
        """The attempt's end as a worker would publish it: output and log read from its pod."""
        text, whole = "", True
        if judged.log_from is not None:
            found = await taskjobs.read_log(
                self.api, namespace, judged.log_from, jobs.OUTPUT_LIMIT_BYTES
            )
            text, whole = found if found is not None else ("", True)
        output: Any = None
        error = judged.error
        if judged.verdict == "succeeded":
            last = text
            if not whole and judged.log_from is not None:
                tail = await taskjobs.read_log(
                    self.api, namespace, judged.log_from, jobs.OUTPUT_LIMIT_BYTES, tail_lines=1
                )
                last = tail[0] if tail is not None else ""
            output = jobs.output_of(last, whole=whole)
        elif text.strip() and not claim.reads_secrets:
            error = f"{error}: {text.strip()[-ERROR_LOG_TAIL:]}"
        elif text.strip():
            error = f"{error} (its log is the attempt's log: kubectl treadle logs)"
        kept_log = text if whole else text + f"\n[log cut at {jobs.LOG_LIMIT_BYTES} bytes]\n"
        return TaskResult(
            workflow_uid=claim.workflow_uid,
            workflow=claim.workflow,
            task=claim.task,
            item=item,
            attempt=attempt,
            outcome=judged.verdict,  # type: ignore[arg-type]
            output=output,
            error=error,
            started_at=judged.started_at or 0.0,
            finished_at=time.time(),
            details=judged.cause.wire() if judged.cause is not None else {},
            run=claim.run,
            log=kept_log or None,
            worker=_worker(judged) if judged.pod else None,
        )

    async def publish(self, pool: str, results: Sequence[TaskResult]) -> None:
        """Results onto the pool's result stream, once each (the record of outcomes drops a
        second publication of the same attempt's end)."""
        queue = self._queue(pool)
        stored = await queue.store_outputs(results)
        await queue.finish([(Delivery("", _message_of(r)), r) for r in stored])

    def _queue(self, pool: str) -> TaskQueue:
        queue = self.queues.get(pool)
        if queue is None:
            queue = self.queues[pool] = TaskQueue(self.client, pool, "operator-jobs")
        return queue


def _worker(judged: jobs.Judgement) -> str:
    """The pod and its node, as status shows the worker of an attempt."""
    pod = judged.pod or "?"
    return (f"{pod} on {judged.node}" if judged.node else pod)[:WORKER_NAME_LIMIT]


def _json_within(value: Any) -> str | None:
    """A forEach's items (or one child's item) as JSON for job pods, when small enough to
    tell (jobs.ITEMS_LIMIT_BYTES)."""
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text.encode()) <= jobs.ITEMS_LIMIT_BYTES else None


def _message_of(result: TaskResult) -> TaskMessage:
    """The attempt a result ends, as a message: what the record of outcomes is keyed by."""
    return TaskMessage(
        workflow_uid=result.workflow_uid,
        workflow=result.workflow,
        task=result.task,
        item=result.item,
        attempt=result.attempt,
        action={},
        run=result.run,
    )
