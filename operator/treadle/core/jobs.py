"""A `job` task's attempt as a batch/v1 Job: its name, its body, the proof that Treadle made it,
and the judgement of how it went, from the Job and its pods.  Pure: the controller
(treadle.controllers.jobtasks) makes the Jobs, watches them and reports what this module
decides.

- **One Job per attempt, named by the attempt.**  The name is a digest of the attempt's
  idempotency key and number, so an operator that dies between the create and the status write
  makes the same Job again: the API server answers AlreadyExists, never a second Job.
- **Signed.**  The attempt the Job runs travels in an annotation with an HMAC made with a key
  only the operator holds (in Redis, where no pool's user reaches): a Job made by anyone else
  under a predictable name is never taken for an attempt's.
- **One pod at a time, the Job's own retries off.**  `backoffLimit: 0` leaves retries to the
  task's `retry` policy; a pod evicted or preempted (condition DisruptionTarget) is replaced by
  the Job controller without counting (`podFailurePolicy: Ignore`), as Job's own design does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from treadle.api.workflows import Task
from treadle.core import actions, causes, jsonvalues, podspecs, templating, timestamps
from treadle.core.messages import TaskMessage

JOB_TASK_LABEL = "treadle.dev/job-task"
"""On every Job (and its pods) Treadle makes for a task attempt: what its watch selects."""
WORKFLOW_UID_LABEL = "treadle.dev/workflow-uid"
TASK_LABEL = "treadle.dev/task"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
ATTEMPT_ANNOTATION = "treadle.dev/attempt"
SIGNATURE_ANNOTATION = "treadle.dev/signature"
REPORTED_ANNOTATION = "treadle.dev/reported"
"""Set once the attempt's end is on its pool's result stream: a restarted operator does not
read the Job's log again."""
INDEX = "batch.kubernetes.io/job-completion-index"
"""The annotation (and label) of an Indexed Job's pod that says which child it runs."""
ITEMS_LIMIT_BYTES = 128 * 1024
"""The largest forEach items list told to a job's pods (TREADLE_ITEMS); a larger one is not
told (the pods have their index)."""
CONTAINER = "main"
GRACE_SECONDS = 10
"""How long a job pod's process has between SIGTERM and SIGKILL when it is terminated."""
OUTPUT_LIMIT_BYTES = 1 << 20
"""The most of a job pod's log read for its output, as for a command's stdout."""
LOG_LIMIT_BYTES = 1 << 20
"""The most of a job pod's log kept as the attempt's log."""
NAME_LIMIT = 63
"""A Job's name is a pod label's value (job-name): at most 63 characters."""
FATAL_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull"})
"""Reasons a container waits for that no wait cures: the attempt fails at once."""
START_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "CreateContainerError",
        "CreateContainerConfigError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)
"""Reasons a container waits for that may clear (a registry back, a Secret made): the
attempt fails once they last past the job's startTimeoutSeconds."""


def _label_part(text: str, limit: int) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return cleaned[:limit].rstrip("-")


def job_name(message: TaskMessage) -> str:
    """The Job of one attempt: `<workflow>-<task>-<digest of key and attempt>`, at most 63
    characters, the same every time it is asked."""
    digest = hashlib.sha256(f"{message.key}#{message.attempt}".encode()).hexdigest()[:10]
    workflow = _label_part(message.workflow.partition("/")[2], 24)
    task = _label_part(message.task, 24)
    return "-".join(part for part in (workflow, task, digest) if part)[:NAME_LIMIT]


def claim(
    message: TaskMessage, pool: str, start_timeout_seconds: int, completions: int | None = None
) -> dict[str, Any]:
    """What a Job says it runs: the attempt's identity (for an Indexed Job, the first attempts
    of every child of its task: `completions` of them), the pool its result goes to, and how
    long its pod may take to start."""
    body = {
        **message.identity(),
        "pool": pool,
        "timeout": message.timeout_seconds,
        "startTimeoutSeconds": start_timeout_seconds,
    }
    if completions is not None:
        body["item"], body["completions"] = None, completions
    return body


def reads_secrets(spec: Mapping[str, Any]) -> bool:
    """Whether a rendered job spec hands its pod a Secret (env, or a volume): its log may then
    hold a Secret's value, which Treadle cannot mask (it does not read the Secret)."""
    pod = {"containers": [{"env": spec.get("env")}], "volumes": spec.get("volumes")}
    return bool(podspecs.secrets_in_pod(pod))


def sign(claim_text: str, name: str, namespace: str, key: bytes) -> str:
    payload = f"{namespace}/{name}\n{claim_text}".encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Claim:
    """The attempt a Job Treadle made runs, read back from it."""

    workflow_uid: str
    workflow: str
    task: str
    item: int | None
    attempt: int
    run: int | None
    pool: str
    start_timeout_seconds: int
    completions: int | None = None
    """Set for an Indexed Job: it runs the first attempt of children 0 to completions - 1."""
    reads_secrets: bool = True
    """Whether its pod is handed a Secret: then its log's tail is not copied into the error
    (status, dead letters and Events are read by more people than pod logs)."""

    def message(self, item: int | None, attempt: int) -> TaskMessage:
        """One attempt it runs, as a message (what starts and the record of outcomes name):
        its own, or a child's of an Indexed Job."""
        return TaskMessage(
            workflow_uid=self.workflow_uid,
            workflow=self.workflow,
            task=self.task,
            item=item,
            attempt=attempt,
            action={},
            run=self.run,
        )


def read_claim(job: Mapping[str, Any], key: bytes) -> Claim | None:
    """The attempt a Job runs, when Treadle made it (its signature holds); else None."""
    meta = job.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    text, signature = annotations.get(ATTEMPT_ANNOTATION), annotations.get(SIGNATURE_ANNOTATION)
    if not isinstance(text, str) or not isinstance(signature, str):
        return None
    expected = sign(text, str(meta.get("name")), str(meta.get("namespace")), key)
    if not hmac.compare_digest(expected, signature):
        return None
    try:
        body = json.loads(text)
        found = Claim(
            workflow_uid=str(body["workflow_uid"]),
            workflow=str(body["workflow"]),
            task=str(body["task"]),
            item=body["item"] if isinstance(body["item"], int) else None,
            attempt=int(body["attempt"]),
            run=body["run"] if isinstance(body["run"], int) else None,
            pool=str(body["pool"]),
            start_timeout_seconds=int(body["startTimeoutSeconds"]),
            completions=int(body["completions"]) if "completions" in body else None,
            reads_secrets=body.get("readsSecrets") is not False,
        )
    except (KeyError, TypeError, ValueError):
        return None
    if found.workflow.partition("/")[0] != meta.get("namespace"):
        return None
    return found


def job_body(
    message: TaskMessage,
    spec: Mapping[str, Any],
    *,
    pool: str,
    owner_uid: str,
    key: bytes,
    deadline_seconds: int | None,
    indexed: tuple[int, int] | None = None,
    items: str | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job of one attempt of a `job` task (`spec` is the rendered action); with
    `indexed` (completions, parallelism), the one Indexed Job of the first attempts of every
    child of a forEach.  `items`: as JSON, the forEach's items for an Indexed Job's pods
    (TREADLE_ITEMS), a child's own item for its Job's (TREADLE_ITEM)."""
    namespace, _, workflow = message.workflow.partition("/")
    if indexed is not None:
        message = dataclasses.replace(message, item=None, attempt=1)
    name = job_name(message)
    start_timeout = int(spec.get("startTimeoutSeconds", 300))
    completions = indexed[0] if indexed is not None else None
    claimed = claim(message, pool, start_timeout, completions)
    claimed["readsSecrets"] = reads_secrets(spec)
    claim_text = json.dumps(claimed, separators=(",", ":"), sort_keys=True)
    labels = {
        JOB_TASK_LABEL: "true",
        WORKFLOW_UID_LABEL: message.workflow_uid,
        TASK_LABEL: _label_part(message.task, 63),
    }
    job_labels = dict(labels)
    if spec.get("queueName"):
        job_labels[QUEUE_LABEL] = str(spec["queueName"])
    told: list[dict[str, Any]] = [
        {"name": "TREADLE_WORKFLOW", "value": message.workflow},
        {"name": "TREADLE_TASK", "value": message.task},
        {"name": "TREADLE_ATTEMPT", "value": str(message.attempt)},
        {"name": "TREADLE_IDEMPOTENCY_KEY", "value": message.key},
    ]
    if indexed is not None:
        told.append(
            {
                "name": "TREADLE_ITEM_INDEX",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX}']"}},
            }
        )
    elif message.item is not None:
        told.append({"name": "TREADLE_ITEM_INDEX", "value": str(message.item)})
    if items is not None:
        told.append({"name": "TREADLE_ITEMS" if indexed else "TREADLE_ITEM", "value": items})
    container: dict[str, Any] = {"name": CONTAINER, "image": spec["image"]}
    for field in ("command", "args", "workingDir", "imagePullPolicy", "resources"):
        if spec.get(field) is not None:
            container[field] = spec[field]
    if spec.get("volumeMounts"):
        container["volumeMounts"] = spec["volumeMounts"]
    container["env"] = [*(spec.get("env") or []), *told]
    if spec.get("securityContext"):
        container["securityContext"] = spec["securityContext"]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [podspecs.restricted_container(container)],
        "securityContext": podspecs.restricted_pod_context(),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": GRACE_SECONDS,
    }
    for field in ("volumes", "nodeSelector", "tolerations", "affinity", "priorityClassName"):
        if spec.get(field):
            pod[field] = spec[field]
    body: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": job_labels,
            "annotations": {
                ATTEMPT_ANNOTATION: claim_text,
                SIGNATURE_ANNOTATION: sign(claim_text, name, namespace, key),
            },
            "ownerReferences": [
                {
                    "apiVersion": "treadle.dev/v1alpha1",
                    "kind": "Workflow",
                    "name": workflow,
                    "uid": owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {
            "backoffLimit": 0,
            "podFailurePolicy": {
                "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
            },
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    if indexed is not None:
        # Each child's pod has the task's timeout; the Job has none (it runs them all).
        del body["spec"]["backoffLimit"]
        body["spec"].update(
            completionMode="Indexed",
            completions=indexed[0],
            parallelism=indexed[1],
            backoffLimitPerIndex=0,
        )
        if deadline_seconds is not None:
            pod["activeDeadlineSeconds"] = deadline_seconds
    elif deadline_seconds is not None:
        body["spec"]["activeDeadlineSeconds"] = deadline_seconds
    return body


def one_job_for_children(task: Task) -> bool:
    """Whether a forEach `job` task's children run as one Indexed Job: its job's fields do not
    depend on the item (an Indexed Job's pods share one template; each learns its index)."""
    if task.for_each is None or not actions.own_pod(task):
        return False
    for _, source in actions.templates(task, "spec"):
        try:
            if "item" in templating.references(source).names:
                return False
        except templating.TemplateError:
            return False
    return True


def index_of(pod: Mapping[str, Any]) -> int | None:
    """The child an Indexed Job's pod runs."""
    meta = pod.get("metadata") or {}
    text = (meta.get("annotations") or {}).get(INDEX) or (meta.get("labels") or {}).get(INDEX)
    return int(text) if isinstance(text, str) and text.isdigit() else None


# -- judging a Job -------------------------------------------------------------------------

Verdict = Literal["pending", "running", "suspended", "succeeded", "failed"]


@dataclass(frozen=True)
class Judgement:
    """How a Job's attempt stands.  `failed` and `succeeded` are its end; `log_from` is the
    pod whose log holds its output (and error)."""

    verdict: Verdict
    pod: str | None = None
    node: str | None = None
    started_at: float | None = None
    error: str | None = None
    cause: causes.Cause | None = None
    log_from: str | None = None
    stop: bool = False
    """Whether the Job must be deleted (its pod never started: it would hold its place)."""
    message: str | None = None
    """Why it waits (suspended by a queue, a pod not yet started)."""


GONE = Judgement("failed", error="its Job was deleted before it ended")
"""A Job deleted (by hand, or by a queue) before its attempt ended: the attempt failed."""
_BARE_JOB: dict[str, Any] = {"metadata": {}, "spec": {}, "status": {}}


def judge_child(
    pods: Sequence[Mapping[str, Any]], *, start_timeout_seconds: int, now: datetime
) -> Judgement:
    """How one child of an Indexed Job stands, from its pods alone (the Job runs them all)."""
    return judge(_BARE_JOB, pods, start_timeout_seconds=start_timeout_seconds, now=now)


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    status = obj.get("status") or {}
    return {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}


def _true(conditions: Mapping[str, Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    found = conditions.get(kind)
    return found if found is not None and found.get("status") == "True" else None


def _created(obj: Mapping[str, Any]) -> datetime | None:
    text = (obj.get("metadata") or {}).get("creationTimestamp")
    return timestamps.parse_optional(text) if isinstance(text, str) else None


def _moment(text: Any) -> float | None:
    parsed = timestamps.parse_optional(text) if isinstance(text, str) else None
    return parsed.timestamp() if parsed is not None else None


def _container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if isinstance(status, Mapping) and status.get("name") == CONTAINER:
            return status
    return {}


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name"))


def _failure(pod: Mapping[str, Any]) -> tuple[str, causes.Cause | None]:
    """Why a failed pod failed, in the words `kubectl describe` would use, and its cause."""
    status = pod.get("status") or {}
    state = _container(pod).get("state") or {}
    terminated = state.get("terminated")
    if isinstance(terminated, Mapping) and isinstance(terminated.get("exitCode"), int):
        code = terminated["exitCode"]
        reason = terminated.get("reason")
        said = f"exit code {code}"
        if reason not in (None, "Error", "Completed"):
            said = f"{reason} ({said})"
        if terminated.get("message"):
            said += f": {str(terminated['message'])[:500]}"
        return said, causes.Cause("exit", exit_code=code)
    waiting = state.get("waiting")
    if isinstance(waiting, Mapping) and waiting.get("reason"):
        return f"{waiting['reason']}: {waiting.get('message') or ''}".rstrip(": "), None
    reason, message = status.get("reason"), status.get("message")
    if reason == "DeadlineExceeded":
        return "timed out: " + str(message or "the pod ran past its deadline"), causes.Cause(
            "timeout"
        )
    return f"{reason or 'Failed'}: {message or 'the pod failed'}".rstrip(": "), None


def _not_starting(pod: Mapping[str, Any]) -> tuple[str, bool] | None:
    """Why a pending pod is not starting, and whether no wait can cure it; None when it is
    on its way (being scheduled, pulled, created)."""
    waiting = (_container(pod).get("state") or {}).get("waiting")
    if isinstance(waiting, Mapping):
        reason = str(waiting.get("reason") or "")
        said = f"{reason}: {waiting.get('message') or ''}".rstrip(": ")
        if reason in FATAL_WAITING:
            return said, True
        if reason in START_WAITING:
            return said, False
    scheduled = _conditions(pod).get("PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        said = f"{scheduled.get('reason') or 'Unschedulable'}: {scheduled.get('message') or ''}"
        return said.rstrip(": "), False
    return None


def judge(
    job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    *,
    start_timeout_seconds: int,
    now: datetime,
) -> Judgement:
    """How the attempt a Job runs stands, from the Job and its pods (newest last)."""
    conditions = _conditions(job)
    ordered = sorted(pods, key=lambda p: _created(p) or now)
    live = [p for p in ordered if not (p.get("metadata") or {}).get("deletionTimestamp")]
    failed = _true(conditions, "Failed") or _true(conditions, "FailureTarget")
    if failed is not None and failed.get("reason") == "DeadlineExceeded":
        # Before the pods: the Job controller kills them, and their exit is not the cause.
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        return Judgement(
            "failed",
            error=f"timed out after {deadline} s (the task's timeoutSeconds): the Job's "
            "activeDeadlineSeconds passed",
            cause=causes.Cause("timeout"),
            log_from=_name(ordered[-1]) if ordered else None,
        )
    if (job.get("spec") or {}).get("suspend") and not any(
        (p.get("status") or {}).get("phase") == "Succeeded" for p in ordered
    ):
        # Held by a queue (Kueue creates Jobs suspended, and suspends them again to preempt):
        # the pods it stopped are not the attempt's failure.
        queue = ((job.get("metadata") or {}).get("labels") or {}).get(QUEUE_LABEL)
        where = f" by queue {queue!r}" if queue else ""
        return Judgement("suspended", message=f"waiting for admission{where}: the Job is suspended")
    for pod in reversed(ordered):
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Succeeded":
            return Judgement(
                "succeeded", pod=_name(pod), node=_node(pod), log_from=_name(pod),
                started_at=_started(pod),
            )  # fmt: skip
        if phase == "Failed" and not _true(_conditions(pod), "DisruptionTarget"):
            error, cause = _failure(pod)
            return Judgement(
                "failed", pod=_name(pod), node=_node(pod), error=error, cause=cause,
                log_from=_name(pod), started_at=_started(pod),
            )  # fmt: skip
    if failed is not None:
        reason = failed.get("reason")
        return Judgement(
            "failed", error=f"the Job failed: {reason}: {failed.get('message') or ''}".rstrip(": ")
        )
    if _true(conditions, "Complete") is not None:
        return Judgement("succeeded")
    if not live:
        return Judgement("pending")
    pod = live[-1]
    if (pod.get("status") or {}).get("phase") == "Running":
        return Judgement("running", pod=_name(pod), node=_node(pod), started_at=_started(pod))
    trouble = _not_starting(pod)
    if trouble is None:
        return Judgement("pending", pod=_name(pod), node=_node(pod))
    said, fatal = trouble
    created = _created(pod) or now
    if fatal or (now - created).total_seconds() >= start_timeout_seconds:
        why = "cannot start" if fatal else f"did not start within {start_timeout_seconds} s"
        return Judgement(
            "failed", pod=_name(pod), node=_node(pod), error=f"the pod {why}: {said}", stop=True
        )
    return Judgement("pending", pod=_name(pod), node=_node(pod), message=said)


def _node(pod: Mapping[str, Any]) -> str | None:
    node = (pod.get("spec") or {}).get("nodeName")
    return str(node) if node else None


def _started(pod: Mapping[str, Any]) -> float | None:
    running = (_container(pod).get("state") or {}).get("running")
    if isinstance(running, Mapping):
        return _moment(running.get("startedAt"))
    terminated = (_container(pod).get("state") or {}).get("terminated")
    if isinstance(terminated, Mapping):
        return _moment(terminated.get("startedAt"))
    return _moment((pod.get("status") or {}).get("startTime"))


def output_of(log: str, *, whole: bool) -> Any:
    """A job's output from its log (Kubernetes keeps stdout and stderr as one stream): the
    whole log as JSON when it is one JSON value, else its last line when that is JSON (a
    program that logs as it goes and prints its result last), else the text.  `whole`: the
    log was read to its end (not cut at OUTPUT_LIMIT_BYTES); a cut log yields only its last
    line."""
    stripped = log.strip()
    if not stripped:
        return None
    if whole:
        try:
            return jsonvalues.loads(stripped)
        except ValueError:
            pass
    last = stripped.rsplit("\n", 1)[-1].strip()
    try:
        return jsonvalues.loads(last)
    except ValueError:
        return jsonvalues.text(log.rstrip("\n") if whole else last)
