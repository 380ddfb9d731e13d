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
TRACKED_WORKFLOWS = Gauge("treadle_workflows_running", "Workflows the operator is driving.")
