"""Every Redis key name Treadle uses, in one place (prefix `treadle:`).

Everything a pool's workers touch lives under `treadle:pool:<pool>:` (its streams, the
idempotency records and outputs of the workflows it serves) or under its namespace's breakers
and buckets, so that one ACL pattern list (`pool_key_patterns`) is all a pool's Redis user may
reach (SPEC, Worker pools: isolation on the shared Redis).
"""

from __future__ import annotations

PREFIX = "treadle"
REJECTED = f"{PREFIX}:rejected"
"""Results stream entries that were no result Treadle wrote, set aside by the operator with the
reason (capped).  Only the operator writes here."""
DATA_MARKER = f"{PREFIX}:operator:data"
"""Set by the operator once Redis holds its data; gone when Redis lost it (a new instance, a
flush), even if a worker already made the streams and groups again."""


def pool_prefix(pool: str) -> str:
    return f"{PREFIX}:pool:{pool}:"


def tasks_stream(pool: str) -> str:
    """Attempts for the workers of one pool (stream, group `workers`)."""
    return f"{pool_prefix(pool)}tasks"


def results_stream(pool: str) -> str:
    """Results of one pool's workers for the operator (stream, group `operator`)."""
    return f"{pool_prefix(pool)}results"


def dead_letters(pool: str) -> str:
    """Poison messages the pool's reaper gave up on, with the reason (stream)."""
    return f"{pool_prefix(pool)}dlq"


def pool_rejected(pool: str) -> str:
    """Task stream entries the pool's workers could not decode, set aside (capped stream)."""
    return f"{pool_prefix(pool)}rejected"


def done_hash(pool: str, workflow_uid: str) -> str:
    """Idempotency records of one workflow (hash)."""
    return f"{pool_prefix(pool)}wf:{workflow_uid}:done"


def cancel_hash(pool: str, workflow_uid: str) -> str:
    """The tasks of a terminated workflow whose attempts are cancelled (hash of task names,
    with a TTL): its pool's workers cancel those they hold and skip those they read later."""
    return f"{pool_prefix(pool)}wf:{workflow_uid}:cancel"


CANCEL_TTL_SECONDS = 3600
ALL_TASKS = "*"
"""The field of a cancel hash that cancels every task of the workflow (it was deleted)."""


def outputs_index(pool: str, workflow_uid: str) -> str:
    """The keys of one workflow's stored outputs (set), so they can be deleted with it."""
    return f"{pool_prefix(pool)}wf:{workflow_uid}:outs"


def output_key(
    pool: str, workflow_uid: str, task: str, item: int | None, run: int | None = None
) -> str:
    """A stored output of one task (or forEach child) of one run, as JSON (string, with a TTL)."""
    run_part = "" if run is None else f"g{run}:"
    item_part = "-" if item is None else item
    return f"{pool_prefix(pool)}wf:{workflow_uid}:out:{run_part}{task}:{item_part}"


def logs_index(pool: str, workflow_uid: str) -> str:
    """The keys of one workflow's stored attempt logs (set): they go when the workflow is
    deleted, not when it finishes."""
    return f"{pool_prefix(pool)}wf:{workflow_uid}:logs"


def log_budget(pool: str, workflow_uid: str) -> str:
    """The bytes one workflow's logs hold on one pool (integer)."""
    return f"{pool_prefix(pool)}wf:{workflow_uid}:logbytes"


def log_key(
    pool: str, workflow_uid: str, task: str, item: int | None, attempt: int, run: int | None = None
) -> str:
    """One attempt's log (string, with a TTL)."""
    run_part = "" if run is None else f"g{run}:"
    item_part = "-" if item is None else item
    return f"{pool_prefix(pool)}wf:{workflow_uid}:log:{run_part}{task}:{item_part}:{attempt}"


def live_log_key(log: str) -> str:
    """What an attempt has written so far, while it runs (string, with a TTL); its log key
    once it ended.  Apart, so that a late copy can never overwrite the final log."""
    return f"{log}:live"


def breaker_hash(namespace: str, target: str) -> str:
    """The circuit breaker of one target, shared by the workers of one namespace (hash:
    failures, opened_at, trial_started_at)."""
    return f"{PREFIX}:breaker:{namespace}:{target}"


def bucket_hash(namespace: str, target: str) -> str:
    """The rate-limit token bucket of one target in one namespace (hash: tokens, updated_at)."""
    return f"{PREFIX}:bucket:{namespace}:{target}"


def pool_user(pool: str) -> str:
    """The Redis ACL user of one pool's workers."""
    return f"{PREFIX}-pool-{pool}"


def pool_key_patterns(pool: str, namespace: str) -> list[str]:
    """The key patterns a pool's Redis user may read and write: its own keys, and the breakers
    and buckets of its namespace (namespace and pool names are DNS labels and uids: none holds
    a glob character)."""
    return [
        f"{pool_prefix(pool)}*",
        f"{PREFIX}:breaker:{namespace}:*",
        f"{PREFIX}:bucket:{namespace}:*",
    ]
