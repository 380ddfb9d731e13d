"""Prometheus metrics of the operator process (names in base units, `treadle_` prefix)."""

from prometheus_client import Counter, Gauge, Histogram, Info

import treadle

BUILD = Info("treadle_build", "Version of the running Treadle build.")
BUILD.info({"version": treadle.__version__})

ADMISSIONS = Counter(
    "treadle_admissions_total",
    "Resources admitted by the operator, by kind and resulting phase.",
    ["kind", "phase"],
)

TASK_RESULTS = Counter(
    "treadle_task_results_total",
    "Task attempt results the operator applied, by outcome (succeeded, failed).",
    ["outcome"],
)
ATTEMPTS_ENQUEUED = Counter(
    "treadle_task_attempts_enqueued_total",
    "Task attempts the operator enqueued (retries included).",
)
DEAD_LETTERS = Counter(
    "treadle_dead_letters_total", "Tasks and forEach children dead-lettered after their retries."
)
MANUAL_RETRIES = Counter(
    "treadle_manual_retries_total",
    "Dead-lettered tasks and forEach children re-queued by a manual retry.",
)
WORKFLOWS_FINISHED = Counter(
    "treadle_workflows_finished_total", "Workflows that reached a final phase, by phase.", ["phase"]
)
STATUS_WRITE_SECONDS = Histogram(
    "treadle_status_write_seconds", "Time to write one workflow status patch."
)
QUEUE_MESSAGES = Gauge(
    "treadle_queue_messages",
    "Messages in the task and result streams of the workflows this operator drives, by state "
    "(waiting: not read by a worker yet; in_flight: read, not finished; results: not applied).",
    ["state"],
)
POISON_MESSAGES = Gauge(
    "treadle_poison_messages", "Messages the reaper dead-lettered as poison (the DLQ stream)."
)
STREAMS_REPAIRED = Counter(
    "treadle_streams_repaired_total",
    "Redis streams found broken (deleted, their group gone, or replaced by another type of key: "
    "a pool's workers can do that) and made again, so that no other pool waits on them.",
)
RESULTS_SET_ASIDE = Counter(
    "treadle_results_set_aside_total",
    "Entries of the results stream that were no result Treadle wrote (junk, forgeries), set "
    "aside in the treadle:rejected stream instead of being applied.",
)
TRACKED_WORKFLOWS = Gauge("treadle_workflows_running", "Workflows the operator is driving.")

SYNC_RUNS = Counter(
    "treadle_sync_runs_total",
    "SyncJob runs that ended, by outcome (Succeeded, Failed, Replaced).",
    ["outcome"],
)
SYNC_RUNS_STARTED = Counter("treadle_sync_runs_started_total", "SyncJob runs started.")
SYNC_SKIPS = Counter(
    "treadle_sync_skips_total",
    "SyncJob attempts skipped because a lock was taken, by reason (PipelineLocked, TableLocked).",
    ["reason"],
)
SYNC_ABANDONED_RETRIES = Counter(
    "treadle_sync_abandoned_retries_total",
    "Retries of skipped runs abandoned because the next slot began.",
)
SYNC_LOCK_WAIT_SECONDS = Histogram(
    "treadle_sync_lock_wait_seconds",
    "Time an attempt spent getting (or waiting for) its locks.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900),
)
SYNC_SCHEDULE_DELAY_SECONDS = Histogram(
    "treadle_sync_schedule_delay_seconds",
    "Time from a slot's fire time to its first run's start.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)

POOL_BACKLOG = Gauge(
    "treadle_pool_backlog",
    "Attempts enqueued on a WorkerPool and not yet taken by a worker.",
    ["namespace", "pool"],
)
POOL_RUNNING = Gauge(
    "treadle_pool_running", "Attempts a WorkerPool's workers hold now.", ["namespace", "pool"]
)
POOL_REPLICAS = Gauge(
    "treadle_pool_replicas",
    "A WorkerPool's worker pods: wanted (autoscaling's answer) and ready.",
    ["namespace", "pool", "state"],
)
