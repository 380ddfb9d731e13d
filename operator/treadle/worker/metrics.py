"""Prometheus metrics of a worker process (served when `treadle worker --metrics-address` is
set): what the tasks did, how long they took, what the guards and the reaper did."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TASKS = Counter(
    "treadle_worker_task_attempts_total",
    "Task attempts a worker ran, by action kind and outcome.",
    ["action", "outcome"],
)
TASK_SECONDS = Histogram(
    "treadle_worker_task_duration_seconds",
    "Time a task attempt took, by action kind.",
    ["action"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DUPLICATES = Counter(
    "treadle_worker_duplicates_skipped_total",
    "Delivered attempts not run: their idempotency key had succeeded, or their workflow was "
    "terminated.",
)
CANCELLED = Counter(
    "treadle_worker_attempts_cancelled_total",
    "Attempts cancelled while they ran because their workflow was terminated.",
)
FAIL_FAST = Counter(
    "treadle_circuit_breaker_fail_fast_total",
    "Attempts failed without calling their target because its circuit breaker was open.",
    ["target"],
)
BREAKER_OPEN = Counter(
    "treadle_circuit_breaker_opened_total",
    "Times a target's consecutive failures reached the breaker's threshold.",
    ["target"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "treadle_rate_limit_wait_seconds_total",
    "Time attempts waited for a token of their target's rate limit.",
    ["target"],
)
REAPED = Counter(
    "treadle_reaped_messages_total",
    "Messages the reaper took from a silent worker, by fate (redelivered, dead_lettered).",
    ["fate"],
)
