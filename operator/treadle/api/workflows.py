"""The Workflow resource: a DAG of tasks run by worker pods from a Redis stream."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from treadle.api.base import (
    SET_LIST,
    Condition,
    Params,
    ResourceModel,
    StatusModel,
    cel,
    free_form,
    map_list,
)
from treadle.api.pools import POOL_NAME_PATTERN

KIND = "Workflow"
PLURAL = "workflows"
SINGULAR = "workflow"
SHORT_NAMES = ["twf"]

TASK_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_TASKS = 500
MAX_EXIT_TASKS = 20
Shutdown = Literal["Stop", "Terminate"]
ACTIONS = ("http", "command", "python", "job")
"""The Task fields that are actions, one per kind (treadle.core.actions); a task has exactly one."""
POOL_OR_WORKERS = (
    "!has(self.workerPool) || !has(self.workers)",
    "set workerPool (a shared WorkerPool) or workers (the workflow's own pods), not both",
)
TASKS_OR_TEMPLATE = (
    "has(self.workflowTemplateRef) ? (!has(self.tasks) || size(self.tasks) == 0) && "
    "(!has(self.onExit) || size(self.onExit) == 0) : has(self.tasks) && size(self.tasks) > 0",
    "set tasks (with onExit) or workflowTemplateRef (the template's are run), not both; a "
    "workflow without a template needs at least one task",
)
_ARGO = "Argo Workflows' field, refused: see docs/from-argo.md for Treadle's counterpart."
ARGO_FIELDS: dict[str, dict[str, Any]] = {
    "entrypoint": {"type": "string", "description": _ARGO},
    "templates": {
        "type": "array",
        "description": _ARGO,
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
    "arguments": {
        "type": "object",
        "description": _ARGO,
        "x-kubernetes-preserve-unknown-fields": True,
    },
}
"""Fields of an Argo Workflow's spec that the schema knows only to refuse them with a pointer
to their counterparts (a bare `unknown field "spec.templates"` tells a new user nothing)."""
ARGO_DOCS = "docs/from-argo.md"
NOT_ARGO = (
    " && ".join(f"!has(self.{name})" for name in ARGO_FIELDS),
    "spec.entrypoint, spec.templates and spec.arguments are Argo Workflows' fields, not "
    "Treadle's: a Workflow's steps are spec.tasks (each a command, http, python or job action, "
    "with dependsOn for the DAG) and its parameters spec.params; " + ARGO_DOCS + " maps every Argo "
    "field to Treadle's",
)
EXACTLY_ONE_ACTION = (
    f"[{', '.join(f'has(self.{name})' for name in ACTIONS)}].exists_one(x, x)",
    f"a task needs exactly one action: {', '.join(ACTIONS[:-1])} or {ACTIONS[-1]}",
)


class Backoff(ResourceModel):
    """Exponential backoff between attempts: duration × factor^(attempt-1), capped, jittered."""

    duration_seconds: float = Field(default=1.0, gt=0, le=3600)
    """Delay before the first retry, in seconds."""
    factor: float = Field(default=2.0, ge=1, le=10)
    """Multiplier applied to the delay after each failed attempt."""
    max_duration_seconds: float = Field(default=30.0, gt=0, le=86400)
    """Upper bound of any single delay, in seconds."""
    jitter: float = Field(default=0.2, ge=0, le=1)
    """Fraction of the delay randomised away (0: none, 1: full jitter)."""


HTTP_STATUS_RULE = r"^([1-5][0-9][0-9]|[1-5]xx)$"
HttpStatusRule = Annotated[
    int | str,
    WithJsonSchema({
        "x-kubernetes-int-or-string": True,
        "description": "A status code (503) or a class of them (5xx).",
    }),
]  # fmt: skip


class RetryOn(ResourceModel):
    """Which failures are retried; any other dead-letters at once, naming why.  Connection
    errors and timeouts are always retried."""

    http_status: list[HttpStatusRule] | None = Field(default=None, max_length=100)
    """HTTP statuses retried, as codes or classes; unset: 429 and 5xx."""
    exit_codes: list[Annotated[int, Field(ge=1, le=255)]] | None = Field(
        default=None, max_length=255
    )
    """A command's exit codes retried; unset: any non-zero."""
    exceptions: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=100
    )
    """Python exception class names retried (the class or any of its bases); unset: any."""

    @field_validator("http_status")
    @classmethod
    def _statuses(cls, rules: list[int | str] | None) -> list[int | str] | None:
        for index, rule in enumerate(rules or []):
            if isinstance(rule, int) and not 100 <= rule <= 599:
                raise ValueError(f"entry {index}: {rule} is no HTTP status (100-599)")
            if isinstance(rule, str) and not re.fullmatch(HTTP_STATUS_RULE, rule):
                raise ValueError(
                    f"entry {index}: {rule!r} is neither a status code nor a class like 5xx"
                )
        return rules


class RetryPolicy(ResourceModel):
    """How often a failed task is tried again before it is dead-lettered."""

    limit: int = Field(default=4, ge=0, le=100)
    """Retries after the first attempt; 0 dead-letters on the first failure."""
    backoff: Backoff = Field(default_factory=Backoff)
    """Delay between attempts (at least what a 429's or 503's Retry-After asks, up to
    maxDurationSeconds)."""
    retry_on: RetryOn | None = None
    """Which failures are retried (default: HTTP 429 and 5xx, any non-zero exit code, any
    exception, connection errors and timeouts)."""


class CircuitBreaker(ResourceModel):
    """A breaker per target, shared by all workers: opens after consecutive failures."""

    failure_threshold: int = Field(default=5, ge=1, le=1000)
    """Consecutive failures that open the breaker."""
    open_seconds: float = Field(default=30.0, gt=0, le=86400)
    """How long the breaker stays open before one trial call is let through."""


class RateLimit(ResourceModel):
    """A token bucket per target, shared by all workers."""

    per_second: float = Field(gt=0, le=100000)
    """Tokens added per second."""
    burst: int = Field(default=1, ge=1, le=100000)
    """Bucket size: calls allowed at once after a quiet period."""


class TaskSettings(ResourceModel):
    """Per-task settings; set under spec.defaults for all tasks, or on one task."""

    timeout_seconds: float | None = Field(default=None, gt=0, le=86400)
    """Time one attempt may take before it counts as failed."""
    retry: RetryPolicy | None = None
    """Retry policy."""
    circuit_breaker: CircuitBreaker | None = None
    """Circuit breaker for the task's target."""
    rate_limit: RateLimit | None = None
    """Rate limit for the task's target."""


class SecretKeyRef(ResourceModel):
    """A key of a Secret in the workflow's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """Name of the Secret."""
    key: str = Field(min_length=1, max_length=253)
    """Key inside the Secret."""


class HeaderSource(ResourceModel):
    """Where a header's value comes from."""

    secret_key_ref: SecretKeyRef
    """A Secret key; the value never appears in status, events or logs."""


class Header(ResourceModel):
    """An HTTP header: a literal value (templated) or one taken from a Secret."""

    model_config = ResourceModel.model_config | {
        "json_schema_extra": cel(
            ("has(self.value) != has(self.valueFrom)", "set exactly one of value or valueFrom")
        )
    }

    name: str = Field(min_length=1, max_length=256)
    """Header name."""
    value: str | None = Field(default=None, max_length=8192)
    """Header value; may use templates."""
    value_from: HeaderSource | None = None
    """Take the value from a Secret."""

    @model_validator(mode="after")
    def _one_source(self) -> Header:
        if (self.value is None) == (self.value_from is None):
            raise ValueError("set exactly one of value or valueFrom")
        return self


HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class HttpAction(ResourceModel):
    """Call an HTTP endpoint; the output is the JSON body, or the text when it is not JSON."""

    method: HttpMethod = "GET"
    """HTTP method."""
    url: str = Field(min_length=1, max_length=8192)
    """URL; may use templates."""
    headers: list[Header] = Field(
        default_factory=list, max_length=64, json_schema_extra=map_list("name")
    )
    """Request headers."""
    body: Any = free_form("Request body: a string is sent as is, anything else as JSON.")
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=list, max_length=64, json_schema_extra=SET_LIST
    )
    """Status codes that count as success; empty means any 2xx."""


class CommandAction(ResourceModel):
    """Run argv in the worker; the output is stdout, parsed as JSON when it parses."""

    args: list[str] = Field(min_length=1, max_length=1024)
    """The program and its arguments; each may use templates."""


class PythonAction(ResourceModel):
    """Call a function importable in the worker image with rendered keyword arguments."""

    callable: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$", max_length=512
    )
    """`module:function`, e.g. `mypkg.merge:run`; its JSON-serialisable return value is the
    output."""
    kwargs: dict[str, Any] | None = free_form("Keyword arguments; string values may use templates.")


QUEUE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
IMAGE_PULL_POLICIES = Literal["Always", "IfNotPresent", "Never"]


def _pod_part(description: str) -> Any:
    """A core/v1 pod field kept as written; treadle.core.podspecs checks it at apply time."""
    return free_form(description)


class JobAction(ResourceModel):
    """Run the task in a pod of its own: each attempt is a batch/v1 Job with this container.
    The fields are a core/v1 Container's and PodSpec's, flattened (Argo's `container`
    template); they pass the allow-list of treadle.core.podspecs, and the Secrets,
    ConfigMaps and claims they name are checked against the applying user's rights.  The
    output is the container's log parsed as JSON (docs/resources.md, Job steps)."""

    image: str = Field(min_length=1, max_length=1024)
    """The container image; may use templates."""
    command: list[Annotated[str, Field(max_length=65536)]] | None = Field(
        default=None, max_length=1024
    )
    """The entrypoint (the image's when unset); each may use templates."""
    args: list[Annotated[str, Field(max_length=65536)]] | None = Field(
        default=None, max_length=1024
    )
    """Arguments to the entrypoint; each may use templates."""
    working_dir: str | None = Field(default=None, max_length=4096)
    """The container's working directory."""
    image_pull_policy: IMAGE_PULL_POLICIES | None = None
    """Always, IfNotPresent or Never."""
    env: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=256,
        description="Environment variables (core/v1 EnvVar); a value may use templates, a "
        "valueFrom may name a Secret or ConfigMap the applying user may read.",
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    resources: dict[str, Any] | None = _pod_part(
        "Requests and limits, extended resources (nvidia.com/gpu) included."
    )
    volumes: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=64,
        description="The pod's volumes (core/v1 Volume): emptyDir, configMap, secret, "
        "persistentVolumeClaim or ephemeral.",
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    volume_mounts: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=64,
        description="Where the volumes go in the container (core/v1 VolumeMount).",
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    node_selector: (
        dict[str, Annotated[str, Field(max_length=63, description="A label's value.")]] | None
    ) = Field(default=None, max_length=64)
    """Labels the pod's node must have."""
    tolerations: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=64,
        description="Taints the pod tolerates (core/v1 Toleration).",
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    affinity: dict[str, Any] | None = _pod_part("Node and pod affinity (core/v1 Affinity).")
    priority_class_name: str | None = Field(default=None, max_length=253)
    """The pod's PriorityClass."""
    security_context: dict[str, Any] | None = _pod_part(
        "The container's security context, at least as strict as Pod Security's restricted "
        "(which is applied whatever it says)."
    )
    queue_name: str | None = Field(default=None, max_length=63, pattern=QUEUE_NAME_PATTERN)
    """A Kueue LocalQueue: set as the Job's label kueue.x-k8s.io/queue-name, so the Job waits
    (suspended) until Kueue admits it."""
    start_timeout_seconds: int = Field(default=300, ge=10, le=86400)
    """How long the pod may take to start (pulled, scheduled, admitted by a queue is not
    counted): past it the attempt fails with the pod's reason (ImagePullBackOff,
    Unschedulable) and is retried or dead-lettered like any failure."""


class Task(TaskSettings):
    """One node of the DAG."""

    model_config = TaskSettings.model_config | {"json_schema_extra": cel(EXACTLY_ONE_ACTION)}

    name: str = Field(min_length=1, max_length=63, pattern=TASK_NAME_PATTERN)
    """Task name, unique in the workflow (lower case, digits and '-')."""
    depends_on: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=MAX_TASKS, json_schema_extra=SET_LIST
    )
    """Tasks that must succeed before this one starts."""
    for_each: str | None = Field(default=None, max_length=4096)
    """A template that renders to a list: one child task per item, available as `item`."""
    when: str | None = Field(default=None, min_length=1, max_length=4096)
    """A template rendered once the dependencies are done: false, "false", 0, null or empty
    skips the task (reason ConditionFalse); its dependents still run."""
    http: HttpAction | None = None
    """Call an HTTP endpoint."""
    command: CommandAction | None = None
    """Run a command in the worker container."""
    python: PythonAction | None = None
    """Call a Python function in the worker."""
    job: JobAction | None = None
    """Run the task in a pod of its own, as a batch/v1 Job per attempt (its own image,
    resources, volumes and node)."""
    worker_pool: str | None = Field(default=None, max_length=63, pattern=POOL_NAME_PATTERN)
    """Run this task on another WorkerPool of the namespace (another image, other resources)
    than the workflow's."""

    @model_validator(mode="after")
    def _one_action(self) -> Task:
        if sum(getattr(self, name) is not None for name in ACTIONS) != 1:
            raise ValueError(EXACTLY_ONE_ACTION[1])
        return self

    @property
    def action(self) -> tuple[str, ResourceModel]:
        """The task's one action: its kind's name and its spec."""
        for name in ACTIONS:
            spec = getattr(self, name)
            if spec is not None:
                return name, spec
        raise ValueError(EXACTLY_ONE_ACTION[1])


class Workers(ResourceModel):
    """The worker pods the operator runs for this workflow."""

    replicas: int = Field(default=1, ge=1, le=100)
    """Number of worker pods."""
    image: str | None = Field(default=None, max_length=1024)
    """Worker image; defaults to the operator's own image."""
    resources: dict[str, Any] | None = free_form("Container resources (requests, limits).")
    redeliver_after_seconds: int = Field(default=25, ge=2, le=3600)
    """How long a task message may stay unacknowledged before another worker gets it (its
    worker died); a live worker renews the messages in hand every third of this."""
    env: list[dict[str, Any]] | None = Field(
        default=None,
        description="Extra environment variables (core/v1 EnvVar).",
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    start_timeout_seconds: int = Field(default=300, ge=10, le=86400)
    """How long attempts may wait for a worker pod that does not start (an image that cannot
    be pulled, a pod that cannot be scheduled, a missing Secret): then they fail, with the
    pod's reason as their error, and are retried or dead-lettered as any failure."""


def _unique_task_names(tasks: list[Task]) -> list[Task]:
    seen: set[str] = set()
    for index, task in enumerate(tasks):
        if task.name in seen:
            raise ValueError(f"tasks[{index}].name: duplicate task name {task.name!r}")
        seen.add(task.name)
    return tasks


class TemplateRef(ResourceModel):
    """A WorkflowTemplate of the workflow's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """The template's name."""


class WorkflowSpec(ResourceModel):
    """What to run: the tasks, their parameters and limits."""

    model_config = ResourceModel.model_config | {
        "json_schema_extra": cel(POOL_OR_WORKERS, TASKS_OR_TEMPLATE)
    }

    suspend: bool = False
    """When true the workflow is validated but not started; set false to start it."""
    params: Params = free_form("Free-form parameters, available to templates as params.")
    concurrency: int = Field(default=8, ge=1, le=10000)
    """Maximum tasks of this workflow executing at once."""
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """The workflow fails when it has run longer than this."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    """Delete the workflow this long after it finished."""
    workers: Workers = Field(default_factory=Workers)
    """Worker pods of this workflow's own (when it runs on no WorkerPool)."""
    worker_pool: str | None = Field(default=None, max_length=63, pattern=POOL_NAME_PATTERN)
    """The WorkerPool of the namespace that runs the tasks; unset: the pool named `default`
    when the namespace has one and `workers` is not set, else the workflow's own pods."""
    defaults: TaskSettings = Field(default_factory=TaskSettings)
    """Settings every task inherits unless it sets its own."""
    workflow_template_ref: TemplateRef | None = None
    """Run this WorkflowTemplate of the namespace: its spec, with these `params` merged over
    its own and any other field set here in place of its; `tasks` and `onExit` stay unset."""
    tasks: list[Task] = Field(
        default_factory=list, max_length=MAX_TASKS, json_schema_extra=map_list("name")
    )
    """The tasks of the DAG (at least one, unless workflowTemplateRef is set)."""
    on_exit: list[Task] = Field(
        default_factory=list, max_length=MAX_EXIT_TASKS, json_schema_extra=map_list("name")
    )
    """Tasks run once the DAG has ended, whatever its outcome (notifications, clean-up), with
    `workflow.phase` and `workflow.failures` in their templates; they may depend on each other
    and read any task's output.  Their failure is recorded and does not change the outcome."""
    shutdown: Shutdown | None = None
    """Stop: no new attempts, running ones finish, then onExit (phase Stopped).  Terminate:
    running attempts are cancelled, then onExit (phase Terminated)."""

    @model_validator(mode="after")
    def _unique_names(self) -> WorkflowSpec:
        if self.workflow_template_ref is not None and (self.tasks or self.on_exit):
            raise ValueError(TASKS_OR_TEMPLATE[1])
        if self.workflow_template_ref is None and not self.tasks:
            raise ValueError("tasks: a workflow needs at least one task (or a workflowTemplateRef)")
        _unique_task_names(self.tasks)
        names = {task.name for task in self.tasks}
        for index, task in enumerate(self.on_exit):
            if task.name in names:
                raise ValueError(f"onExit[{index}].name: duplicate task name {task.name!r}")
            names.add(task.name)
        if self.worker_pool is not None and "workers" in self.model_fields_set:
            raise ValueError(POOL_OR_WORKERS[1])
        return self

    @property
    def all_tasks(self) -> list[Task]:
        """The DAG's tasks, then the exit tasks."""
        return [*self.tasks, *self.on_exit] if self.on_exit else self.tasks

    @property
    def own_workers(self) -> bool:
        """Whether `workers` was set (a workflow that sets it never runs on `default`)."""
        return "workers" in self.model_fields_set


TEMPLATE_KIND = "WorkflowTemplate"
TEMPLATE_PLURAL = "workflowtemplates"
TEMPLATE_SINGULAR = "workflowtemplate"
TEMPLATE_SHORT_NAMES = ["twft"]
NO_NESTED_TEMPLATE = (
    "!has(self.workflowTemplateRef)",
    "workflowTemplateRef: a WorkflowTemplate holds tasks itself; it cannot refer to another",
)


class WorkflowTemplateSpec(WorkflowSpec):
    """A reusable Workflow spec, validated as a Workflow's is; `kubectl treadle submit` or a
    Workflow's `spec.workflowTemplateRef` runs it."""

    model_config = WorkflowSpec.model_config | {
        "json_schema_extra": cel(POOL_OR_WORKERS, TASKS_OR_TEMPLATE, NO_NESTED_TEMPLATE)
    }

    @model_validator(mode="before")
    @classmethod
    def _holds_tasks(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "workflowTemplateRef" in data:
            raise ValueError(NO_NESTED_TEMPLATE[1])
        return data


TEMPLATE_COLUMNS: list[dict[str, Any]] = [
    {"name": "Tasks", "type": "string", "jsonPath": ".spec.tasks[*].name", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

WorkflowPhase = Literal[
    "Pending", "Running", "Succeeded", "Failed", "Stopped", "Terminated", "Suspended", "Invalid"
]
ENDED_PHASES = ("Succeeded", "Failed", "Stopped", "Terminated")
"""The phases of a run that is over."""
SkipReason = Literal[
    "ConditionFalse", "UpstreamFailed", "Stopped", "Terminated", "Deadline", "StatusLimit"
]
TaskPhase = Literal[
    "Pending", "Queued", "Running", "Retrying", "Succeeded", "DeadLettered", "Skipped"
]


class TaskStatus(StatusModel):
    """What happened to one task (or, for forEach, to its children)."""

    phase: TaskPhase
    """Task phase."""
    reason: SkipReason | None = None
    """Why a Skipped task was skipped: its condition was false (ConditionFalse), a task it
    depends on failed (UpstreamFailed), the workflow was stopped or terminated, its deadline
    passed, or its status had no room left (StatusLimit)."""
    attempts: int | None = Field(default=None, ge=0)
    """Attempts made so far."""
    started_at: str | None = None
    """When the first attempt was queued."""
    attempt_started_at: str | None = None
    """When the latest attempt began on its worker (a task is Running from then until its
    result: workers tell the operator of attempts that run longer than a second)."""
    worker: str | None = None
    """The worker pod that runs (or ran) the latest attempt (a `job` task's: its pod and node)."""
    waiting: str | None = None
    """Why a Queued attempt has not begun: a `job` task's Job held for admission by a queue
    (Kueue), or its pod not yet pulled or scheduled."""
    finished_at: str | None = None
    """When the task reached a final phase."""
    next_retry_at: str | None = None
    """When a Retrying task is tried again."""
    output: Any = free_form(
        "The task's output, when small and the workflow's 64 KiB inline budget allows."
    )
    output_ref: str | None = None
    """Where the output is stored (a Redis key), when status does not inline it; templates see
    its value.  forEach children's outputs are stored the same way and never in status."""
    error: str | None = None
    """The last error."""
    log_ref: str | None = None
    """Where the log of the attempt that ended last is stored (a Redis key): `kubectl treadle
    logs` reads it, and every other attempt's, through the operator.  Unset: that attempt
    wrote nothing.  forEach children's logs are stored the same way, never named here."""
    items: int | None = Field(default=None, ge=0)
    """forEach: number of children."""
    succeeded: int | None = Field(default=None, ge=0)
    """forEach: children that succeeded."""
    failed: int | None = Field(default=None, ge=0)
    """forEach: children that failed at least once."""
    dead_lettered: int | None = Field(default=None, ge=0)
    """forEach: children that were dead-lettered."""
    running_items: str | None = None
    """forEach: children in flight, as index ranges ("0-7,9")."""
    done_items: str | None = None
    """forEach: children that succeeded, as index ranges."""
    dead_items: str | None = None
    """forEach: children that were dead-lettered, as index ranges."""
    item_attempts: dict[str, str] | None = None
    """forEach: attempts of children past their first (and of dead-lettered children), as
    index ranges by attempt count: {"2": "0-7,9"}."""
    retry_at: dict[str, str] | None = None
    """forEach: children waiting for a retry, as index ranges by when they are due."""
    items_digest: str | None = None
    """forEach: digest of the items the forEach template rendered to; the items themselves
    are not kept (rendered again when needed, and checked against this)."""
    next_item: int | None = Field(default=None, ge=0)
    """forEach: the next child index to launch."""
    attempt_base: int | None = Field(default=None, ge=0)
    """Attempts spent before the last manual retry; retry.limit counts from here."""
    item_attempt_base: dict[str, str] | None = None
    """forEach: attempts each manually retried child had spent before, as index ranges by
    that count."""


class DeadLetter(ResourceModel):
    """A task (or forEach child) that exhausted its retries."""

    task: str
    """Task name."""
    item: int | None = None
    """forEach child index."""
    attempts: int = Field(ge=0)
    """Attempts made."""
    error: str
    """The last error."""
    at: str
    """When it was dead-lettered."""


class WorkflowStatus(StatusModel):
    """The record of truth of a workflow's run."""

    phase: WorkflowPhase | None = None
    """Pending, Running, Succeeded, Failed, Suspended or Invalid."""
    progress: str | None = None
    """Finished / total tasks, forEach children counted."""
    observed_generation: int | None = None
    """The metadata.generation this status was computed from."""
    run_generation: int | None = None
    """The metadata.generation this run started from: part of every attempt's idempotency key,
    so a run started again (its spec changed around the webhook) never mistakes the earlier
    run's records for its own."""
    spec_hash: str | None = None
    """Digest of the spec without the fields that may change while it runs (suspend, shutdown,
    activeDeadlineSeconds): a change of anything else starts the run again."""
    started_at: str | None = None
    """When the first task started."""
    finished_at: str | None = None
    """When the workflow reached Succeeded or Failed."""
    message: str | None = None
    """A human-readable summary of the current phase."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=map_list("type"))
    """Ready, Reconciling and Stalled conditions (metav1.Condition)."""
    tasks: dict[str, TaskStatus] = Field(default_factory=dict)
    """Status per task, by task name."""
    dead_letters: list[DeadLetter] = Field(default_factory=list)
    """Tasks that exhausted their retries (the newest 50)."""
    dead_letter_count: int | None = Field(default=None, ge=0)
    """How many dead letters stand, listed or not."""
    template_spec: dict[str, Any] | None = free_form(
        "The WorkflowTemplate's spec as it was when this run was admitted (workflowTemplateRef): "
        "later edits of the template do not change it."
    )
    worker_pool: str | None = None
    """The WorkerPool the run's tasks go to (chosen when it was admitted, kept for the run);
    unset: the workflow's own worker pods."""

    @classmethod
    def of(cls, raw: Mapping[str, Any] | None) -> WorkflowStatus:
        """From status as the API server holds it (camelCase JSON); raises ValidationError."""
        return cls.model_validate(raw or {})

    def wire(self) -> dict[str, Any]:
        """As the API server holds it: camelCase JSON without the fields that are unset."""
        return self.model_dump(mode="json", exclude_none=True)

    def working_copy(self) -> WorkflowStatus:
        """A copy the engine may edit without touching this one.  Shallow where the engine
        only replaces (outputs, dead letters and conditions are never edited in place):
        far cheaper than a deep copy of a status holding 64 KiB of inline outputs."""
        return self.model_copy(
            update={
                "tasks": {name: entry.model_copy() for name, entry in self.tasks.items()},
                "dead_letters": list(self.dead_letters),
                "conditions": list(self.conditions),
            }
        )


PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Message", "type": "string", "jsonPath": ".status.message"},
]
