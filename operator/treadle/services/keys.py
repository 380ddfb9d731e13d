"""Every Redis key name Treadle uses, in one place (prefix `treadle:`)."""

from __future__ import annotations

PREFIX = "treadle"
RESULTS = f"{PREFIX}:results"
DEAD_LETTERS = f"{PREFIX}:dlq"
REJECTED = f"{PREFIX}:rejected"
"""Results stream entries that were no result Treadle wrote, set aside with the reason (capped)."""
DATA_MARKER = f"{PREFIX}:operator:data"
"""Set by the operator once Redis holds its data; gone when Redis lost it (a new instance, a
flush), even if a worker already made the streams and groups again."""


def tasks_stream(pool: str) -> str:
    """Attempts for the workers of one pool (stream, group `workers`)."""
    return f"{PREFIX}:pool:{pool}:tasks"


def done_hash(workflow_uid: str) -> str:
    """Idempotency records of one workflow (hash)."""
    return f"{PREFIX}:wf:{workflow_uid}:done"


def breaker_hash(target: str) -> str:
    """The circuit breaker of one target (hash: failures, opened_at, trial_started_at)."""
    return f"{PREFIX}:breaker:{target}"


def bucket_hash(target: str) -> str:
    """The rate-limit token bucket of one target (hash: tokens, updated_at)."""
    return f"{PREFIX}:bucket:{target}"


def outputs_index(workflow_uid: str) -> str:
    """The keys of one workflow's large outputs (set), so they can be deleted with it."""
    return f"{PREFIX}:wf:{workflow_uid}:outs"


def output_key(workflow_uid: str, task: str, item: int | None, run: int | None = None) -> str:
    """A large output of one task (or forEach child) of one run, as JSON (string, with a TTL)."""
    run_part = "" if run is None else f"g{run}:"
    return f"{PREFIX}:wf:{workflow_uid}:out:{run_part}{task}:{'-' if item is None else item}"
