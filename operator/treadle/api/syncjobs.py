"""The SyncJob resource: a cron-scheduled run (a pod, or a Workflow) guarded by pipeline and
table locks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from treadle.api.base import (
    SET_LIST,
    Condition,
    Params,
    ResourceModel,
    StatusRecord,
    cel,
    free_form,
    map_list,
)
from treadle.api.workflows import TemplateRef, WorkflowSpec

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


class WorkflowRun(ResourceModel):
    """A run that is a Workflow: a WorkflowTemplate of the namespace, or a Workflow spec."""

    model_config = ResourceModel.model_config | {
        "json_schema_extra": cel(
            (
                "has(self.workflowTemplateRef) != has(self.spec)",
                "set workflowTemplateRef (a WorkflowTemplate) or spec (a Workflow spec), not both",
            )
        )
    }

    workflow_template_ref: TemplateRef | None = None
    """The WorkflowTemplate each run runs."""
    params: Params = free_form(
        "Parameters of each run, merged over the template's (or the spec's); their strings may "
        "use {{ slot }} (the slot's time, RFC 3339), {{ job }} and {{ fencing_token }}."
    )
    spec: WorkflowSpec | None = None
    """A Workflow spec each run runs (instead of a template)."""

    @model_validator(mode="after")
    def _one_source(self) -> WorkflowRun:
        if (self.workflow_template_ref is None) == (self.spec is None):
            raise ValueError(
                "set workflowTemplateRef (a WorkflowTemplate) or spec (a Workflow spec), not both"
            )
        return self


ConcurrencyPolicy = Literal["Forbid", "Allow", "Replace"]


class CatchUp(ResourceModel):
    """What runs of the slots that began while no run could start (the operator was away, or
    a run outlasted its slot)."""

    policy: Literal["Latest", "All"] = "Latest"
    """Latest: only the latest slot; All: every missed slot, oldest first, one at a time."""
    max_runs: int = Field(default=10, ge=1, le=100)
    """With All: at most this many missed slots (the latest ones) run."""


class SyncJobSpec(ResourceModel):
    """When to run, which locks to hold, and what to run."""

    model_config = ResourceModel.model_config | {
        "json_schema_extra": cel(
            (
                "has(self.template) != has(self.workflow)",
                "set template (a pod) or workflow (a Workflow) for the runs, not both",
            )
        )
    }

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
    backfill_history_limit: int = Field(default=2, ge=0, le=10)
    """Backfills whose runs are all kept (every slot's pod or Workflow, with its outputs and
    logs), the latest first: a backfill's runs are not counted in the two limits above, and
    an older backfill's go once this many newer ones began."""
    concurrency_policy: ConcurrencyPolicy = "Forbid"
    """When a slot begins while a run is under way: Forbid waits for it (the pipeline lock),
    Allow runs beside it (its runs share the locks), Replace terminates it."""
    catch_up: CatchUp = Field(default_factory=CatchUp)
    """Which missed slots run when the job can run again."""
    template: RunTemplate | None = None
    """The run's pod (or set workflow)."""
    workflow: WorkflowRun | None = None
    """The run's Workflow (or set template)."""

    @model_validator(mode="after")
    def _one_run(self) -> SyncJobSpec:
        if (self.template is None) == (self.workflow is None):
            raise ValueError("set template (a pod) or workflow (a Workflow) for the runs, not both")
        return self


SyncOutcome = Literal["Succeeded", "Failed", "Skipped"]
SkipReason = Literal["PipelineLocked", "TableLocked"]


class ActiveRun(StatusRecord):
    """A run under way."""

    name: str
    """The run's pod or Workflow."""
    kind: Literal["Pod", "Workflow"] = "Pod"
    slot: str
    """The slot it runs for."""
    holder: str
    """Who its locks are held for (the run itself, or the runs it shares them with)."""
    started: str | None = None
    """When it started."""
    backfill: bool = False
    """Run by a backfill."""


BackfillPhase = Literal["Running", "Complete", "Cancelled"]


class Backfill(StatusRecord):
    """The latest backfill (`kubectl treadle sync backfill`): every slot of a range, run
    oldest first under the job's locks."""

    id: int = Field(ge=1)
    """Which backfill of the job this is (1, 2, ...): part of its runs' names."""
    range: str
    """The slots' range, `from/to` (RFC 3339): slots starting at or after from, before to."""
    slots: int = Field(ge=0)
    """Slots in the range."""
    parallel: int = Field(default=1, ge=1)
    """Runs at once."""
    rerun: bool = False
    """Run slots that already succeeded too."""
    next: str | None = None
    """The next slot to start (None: every slot has started)."""
    done: int = 0
    """Slots whose run succeeded."""
    failed: int = 0
    """Slots whose run failed."""
    skipped: int = 0
    """Slots not run because they had succeeded already."""
    phase: BackfillPhase = "Running"
    start_time: str | None = None
    completion_time: str | None = None
    message: str | None = None


ManualRunOutcome = Literal["Waiting", "Started", "Skipped", "Failed"]


class ManualRun(StatusRecord):
    """The latest run asked for by hand (`kubectl treadle sync run`) and what came of it."""

    requested: str = Field(max_length=1024)
    """The value of the `treadle.dev/run-now` annotation that asked for it."""
    outcome: ManualRunOutcome
    """Waiting (for the run under way: the request stays until it starts), Started, Skipped
    (a lock was held: the message says by whom) or Failed (the run could not be made)."""
    run: str | None = None
    """The run's pod or Workflow, when one was made."""
    message: str | None = None


class TemplateSecrets(StatusRecord):
    """The Secrets the WorkflowTemplate of `spec.workflow` read when a generation of the job
    was admitted: the ones the applying user was checked for."""

    generation: int | None = None
    names: list[str] = Field(default_factory=list, max_length=1000)


class SyncJobStatus(StatusRecord):
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
    """The newest scheduled run under way (pod or Workflow)."""
    active_runs: list[ActiveRun] = Field(default_factory=list, json_schema_extra=map_list("name"))
    """Every run under way (scheduled, caught up and backfilled)."""
    catch_up_since: str | None = None
    """When catching up on missed slots began (catchUp All)."""
    succeeded_slots: str | None = None
    """The slots whose run succeeded, as ranges of slot times (`a/b,c`), latest 50 ranges."""
    backfill: Backfill | None = None
    """The latest backfill and how far it got."""
    manual_run: ManualRun | None = None
    """The latest run asked for by hand and what came of it."""
    template_secrets: TemplateSecrets | None = None
    """The Secrets its WorkflowTemplate read when this generation was admitted: a run whose
    template reads another one fails (the template changed since)."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=map_list("type"))
    """Ready and Degraded conditions (metav1.Condition)."""


PRINTER_COLUMNS = [
    {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
    {"name": "Last Outcome", "type": "string", "jsonPath": ".status.lastOutcome"},
    {"name": "Last Run", "type": "date", "jsonPath": ".status.lastAttemptTime"},
    {"name": "Next", "type": "string", "jsonPath": ".status.nextScheduleTime"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
