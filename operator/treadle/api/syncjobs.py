"""The SyncJob resource: a cron-scheduled run guarded by pipeline and table locks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from treadle.api.base import SET_LIST, Condition, ResourceModel, cel, map_list

KIND = "SyncJob"
PLURAL = "syncjobs"
SINGULAR = "syncjob"
SHORT_NAMES = ["sj"]

LOCK_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A DNS-1123 subdomain (a Lease name is `treadle-table-<name>`): no empty part, as in `a..b`."""


class SkippedRetry(ResourceModel):
    """Pace of retries of a skipped run inside its cron slot: clamp(ratio × interval, min, max)."""

    model_config = ResourceModel.model_config | {
        "json_schema_extra": cel(
            (
                "!has(self.minSeconds) || !has(self.maxSeconds)"
                " || self.minSeconds <= self.maxSeconds",
                "minSeconds must not exceed maxSeconds",
            )
        )
    }

    ratio: float = Field(default=0.5, gt=0, le=1)
    """Fraction of the cron interval to wait between attempts."""
    min_seconds: int = Field(default=30, ge=1)
    """Shortest wait between attempts."""
    max_seconds: int = Field(default=300, ge=1)
    """Longest wait between attempts."""

    @model_validator(mode="after")
    def _ordered(self) -> SkippedRetry:
        if self.min_seconds > self.max_seconds:
            raise ValueError("minSeconds must not exceed maxSeconds")
        return self


class RunTemplate(ResourceModel):
    """The pod a run creates (a core/v1 PodTemplateSpec)."""

    metadata: dict[str, Any] | None = Field(
        default=None,
        description="Labels and annotations for the run's pod.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    spec: dict[str, Any] = Field(
        description="The run's pod spec (core/v1 PodSpec).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class SyncJobSpec(ResourceModel):
    """When to run, which locks to hold, and what to run."""

    schedule: str = Field(min_length=1, max_length=256)
    """Cron schedule: five fields (minute hour day-of-month month day-of-week), or six with
    seconds first."""
    time_zone: str | None = Field(default=None, max_length=64)
    """IANA time zone of the schedule, e.g. Europe/Berlin; default UTC."""
    suspend: bool = False
    """When true no new run starts; a running one finishes."""
    starting_deadline_seconds: int | None = Field(default=None, ge=0)
    """A missed slot still starts if no more than this late."""
    pipeline: str | None = Field(default=None, max_length=200, pattern=LOCK_NAME_PATTERN)
    """Pipeline lock name; default metadata.name."""
    tables: list[Annotated[str, Field(max_length=200, pattern=LOCK_NAME_PATTERN)]] = Field(
        default_factory=list, max_length=100, json_schema_extra=SET_LIST
    )
    """Tables whose DDL lock must be free for a run to start."""
    ddl: bool = False
    """True: this job changes schema and takes the table locks itself."""
    lock_wait_seconds: int = Field(default=0, ge=0, le=86400)
    """0: skip at once when a lock is taken; more: wait up to this long for it."""
    skipped_retry: SkippedRetry = Field(default_factory=SkippedRetry)
    """Retry pace of a skipped run inside its slot."""
    max_consecutive_failures: int = Field(default=5, ge=1, le=1000)
    """Failed runs in a row after which the job reports Degraded and stops scheduling."""
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """A run longer than this is stopped and counts as failed."""
    successful_runs_history_limit: int = Field(default=3, ge=0, le=100)
    """Finished successful run pods to keep."""
    failed_runs_history_limit: int = Field(default=1, ge=0, le=100)
    """Finished failed run pods to keep."""
    template: RunTemplate
    """The run's pod."""


SyncOutcome = Literal["Succeeded", "Failed", "Skipped"]
SkipReason = Literal["PipelineLocked", "TableLocked"]


class SyncJobStatus(ResourceModel):
    """The record of truth of a sync job's schedule, locks and runs."""

    observed_generation: int | None = None
    """The metadata.generation this status was computed from."""
    current_slot: str | None = None
    """Start of the cron slot the job is working on."""
    last_attempt_time: str | None = None
    """When a run was last attempted."""
    last_outcome: SyncOutcome | None = None
    """Outcome of the last attempt: Succeeded, Failed or Skipped."""
    last_skip_reason: SkipReason | None = None
    """Why the last attempt was skipped: PipelineLocked or TableLocked."""
    last_skip_holder: str | None = None
    """Who held the lock that made the last attempt skip."""
    attempts_in_slot: int | None = Field(default=None, ge=0)
    """Attempts made in the current slot."""
    next_retry_time: str | None = None
    """When a skipped run is tried again inside the slot."""
    next_schedule_time: str | None = None
    """The next cron fire time."""
    consecutive_failures: int | None = Field(default=None, ge=0)
    """Failed runs in a row."""
    last_successful_time: str | None = None
    """When a run last succeeded."""
    active_run: str | None = None
    """Name of the run pod now running."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=map_list("type"))
    """Ready and Degraded conditions (metav1.Condition)."""


PRINTER_COLUMNS = [
    {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
    {"name": "Last Outcome", "type": "string", "jsonPath": ".status.lastOutcome"},
    {"name": "Last Run", "type": "date", "jsonPath": ".status.lastAttemptTime"},
    {"name": "Next", "type": "string", "jsonPath": ".status.nextScheduleTime"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
