"""The WorkerPool resource: a warm, shared set of worker pods (a Deployment the operator owns)
that runs the tasks of every workflow of its namespace that names it."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from treadle.api.base import SET_LIST, Condition, ResourceModel, StatusModel, cel, map_list

KIND = "WorkerPool"
PLURAL = "workerpools"
SINGULAR = "workerpool"
SHORT_NAMES = ["twp"]

DEFAULT_POOL = "default"
"""The pool a workflow of its namespace runs on when it names neither a pool nor workers."""
POOL_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A DNS label: a pool's Redis keys are `treadle:pool:<namespace>.<name>:`, so no dots."""
NAME_RULE = {
    "rule": f"self.metadata.name.matches('{POOL_NAME_PATTERN}')",
    "message": "metadata.name: a WorkerPool's name must be a DNS label (lower case, digits, '-'; "
    "no dots)",
}
MAX_SECRETS = 64
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class Replicas(ResourceModel):
    """How many worker pods the pool may have."""

    model_config = ResourceModel.model_config | {
        "json_schema_extra": cel(
            ("self.min <= self.max", "min must not exceed max"),
            (
                "!has(self.desired) || (self.desired >= self.min && self.desired <= self.max)",
                "desired must be between min and max",
            ),
        )
    }

    min: int = Field(default=1, ge=0, le=1000)
    """The fewest pods; 0 scales to zero when idle (the first task then waits for a pod)."""
    max: int = Field(default=10, ge=1, le=1000)
    """The most pods autoscaling makes."""
    desired: int | None = Field(default=None, ge=0, le=1000)
    """With `autoscaling: false`: the pods wanted, set through the scale subresource
    (`kubectl scale twp/NAME --replicas=N`, an HPA, KEDA); unset means `min`."""

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        if self.desired is not None and not self.min <= self.desired <= self.max:
            raise ValueError("desired must be between min and max")
        return self


class PlainEnv(ResourceModel):
    """An environment variable with a plain value (Secrets reach a pool through `secrets`)."""

    name: str = Field(min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    """Variable name; names starting with TREADLE_ are Treadle's own."""
    value: str = Field(default="", max_length=32768)
    """Its value."""


class WorkerPoolSpec(ResourceModel):
    """What the pool's pods run and how many of them there are."""

    image: str | None = Field(default=None, max_length=1024)
    """Worker image (treadle and the user's code); defaults to the operator's own image."""
    replicas: Replicas = Field(default_factory=Replicas)
    """Bounds of the pool's size."""
    slots_per_worker: int = Field(default=16, ge=1, le=1024)
    """Attempts one worker pod runs at once."""
    target_backlog_per_worker: int = Field(default=32, ge=1, le=100000)
    """Autoscaling adds pods while (queued + running attempts) / pods exceeds this."""
    scale_down_after_seconds: int = Field(default=120, ge=0, le=86400)
    """How long fewer pods must have sufficed before the pool shrinks (never below min)."""
    autoscaling: bool = True
    """False: the pool's size is `replicas.desired`, set through the scale subresource."""
    resources: dict[str, Any] | None = Field(
        default=None,
        description="Container resources (requests, limits) of each worker pod.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    env: list[PlainEnv] = Field(
        default_factory=list, max_length=128, json_schema_extra=map_list("name")
    )
    """Extra environment variables, plain values only."""
    secrets: list[Annotated[str, Field(max_length=253, pattern=SECRET_NAME_PATTERN)]] = Field(
        default_factory=list, max_length=MAX_SECRETS, json_schema_extra=SET_LIST
    )
    """Secrets mounted read-only into the pool's pods: the only Secrets its tasks may name."""
    max_task_seconds: int = Field(default=3600, ge=10, le=86400)
    """The longest attempt the pool runs: a task with a longer timeout is refused at apply
    time, and a stopping worker (scale-down, rollout) is given this long to finish what it
    holds (the pods' termination grace period is this plus 30 s)."""
    redeliver_after_seconds: int = Field(default=25, ge=2, le=3600)
    """How long a task message may stay unacknowledged before another worker gets it (its
    worker died); a live worker renews the messages in hand every third of this."""


class WorkerPoolStatus(StatusModel):
    """What the pool is doing, as the operator last saw it."""

    replicas: int | None = Field(default=None, ge=0)
    """Worker pods wanted now (autoscaling's answer, or `replicas.desired`)."""
    ready_replicas: int | None = Field(default=None, ge=0)
    """Worker pods ready."""
    ready: str | None = None
    """Ready pods / wanted pods, as `kubectl get twp` shows it."""
    backlog: int | None = Field(default=None, ge=0)
    """Attempts enqueued and not yet taken by a worker."""
    running: int | None = Field(default=None, ge=0)
    """Attempts a worker holds now."""
    selector: str | None = None
    """The label selector of the pool's pods (for the scale subresource and HPA)."""
    observed_generation: int | None = None
    """The metadata.generation this status was computed from."""
    message: str | None = None
    """A human-readable summary."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=map_list("type"))
    """Ready, Reconciling and Stalled conditions (metav1.Condition)."""

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


PRINTER_COLUMNS = [
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
    {"name": "Backlog", "type": "integer", "jsonPath": ".status.backlog"},
    {"name": "Running", "type": "integer", "jsonPath": ".status.running"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
SCALE = {
    "specReplicasPath": ".spec.replicas.desired",
    "statusReplicasPath": ".status.replicas",
    "labelSelectorPath": ".status.selector",
}
