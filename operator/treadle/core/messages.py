"""What travels on the task queue: a task attempt to run, and the result of running it.

Plain data with a flat string encoding (Redis stream fields are strings); the queue service
moves them, the engine creates and reads them.  No I/O here.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Fields = dict[str, str]
Outcome = Literal["succeeded", "failed"]


def secret_env_name(secret: str, key: str) -> str:
    """The worker pod's environment variable that carries one Secret key (header values from
    Secrets reach the worker this way, never through Redis)."""
    return "TREADLE_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", f"{secret}__{key}").upper()


def idempotency_key(workflow_uid: str, task: str, item: int | None) -> str:
    """`<workflow uid>/<task>/<item index>`; a task without forEach has item `-`."""
    return f"{workflow_uid}/{task}/{'-' if item is None else item}"


@dataclass(frozen=True)
class TaskMessage:
    """One attempt of one task (or forEach child), with its action already rendered."""

    workflow_uid: str
    workflow: str
    """namespace/name, for logs and for routing the result."""
    task: str
    item: int | None
    attempt: int
    action: dict[str, Any]
    """{"command": {...}} or {"http": {...}} or {"python": {...}}, templates rendered."""
    timeout_seconds: float = 60.0
    redeliveries: int = 0
    """How often the reaper re-published this attempt after its worker went silent."""
    guards: dict[str, Any] = field(default_factory=dict)
    """The task's `circuitBreaker` and `rateLimit` settings, as in its spec."""

    @property
    def key(self) -> str:
        return idempotency_key(self.workflow_uid, self.task, self.item)

    def encode(self) -> Fields:
        return {
            "uid": self.workflow_uid,
            "workflow": self.workflow,
            "task": self.task,
            "item": "" if self.item is None else str(self.item),
            "attempt": str(self.attempt),
            "action": json.dumps(self.action, separators=(",", ":")),
            "timeout": repr(self.timeout_seconds),
            "redeliveries": str(self.redeliveries),
            "guards": json.dumps(self.guards, separators=(",", ":")),
        }

    @classmethod
    def decode(cls, fields: Fields) -> TaskMessage:
        return cls(
            workflow_uid=fields["uid"],
            workflow=fields["workflow"],
            task=fields["task"],
            item=int(fields["item"]) if fields.get("item") else None,
            attempt=int(fields["attempt"]),
            action=json.loads(fields["action"]),
            timeout_seconds=float(fields.get("timeout", "60")),
            redeliveries=int(fields.get("redeliveries", "0")),
            guards=json.loads(fields.get("guards") or "{}"),
        )


INLINE_OUTPUT_LIMIT_BYTES = 4096
"""Largest output (as JSON) carried in a result and kept in status; larger ones are stored in
Redis, and status holds a reference."""


@dataclass(frozen=True)
class TaskResult:
    """The outcome of one attempt, as the worker reports it to the operator."""

    workflow_uid: str
    workflow: str
    task: str
    item: int | None
    attempt: int
    outcome: Outcome
    output: Any = None
    error: str | None = None
    started_at: float = 0.0
    finished_at: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    output_ref: str | None = None
    """Where a large output is stored (in Redis) instead of `output`."""

    @property
    def key(self) -> str:
        return idempotency_key(self.workflow_uid, self.task, self.item)

    def stored_at(self, ref: str) -> TaskResult:
        """This result with its output stored elsewhere, under `ref`."""
        return dataclasses.replace(self, output=None, output_ref=ref)

    def encode(self) -> Fields:
        body = asdict(self)
        return {"key": self.key, "uid": self.workflow_uid, "result": json.dumps(body)}

    @classmethod
    def decode(cls, fields: Fields) -> TaskResult:
        return cls(**json.loads(fields["result"]))
