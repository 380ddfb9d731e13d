"""What travels on the task queue: a task attempt to run, and the result of running it.

Plain data with a flat string encoding (Redis stream fields are strings); the queue service
moves them, the engine creates and reads them.  No I/O here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from treadle.core import jsonvalues

Fields = dict[str, str]
Outcome = Literal["succeeded", "failed"]
OUTCOMES = ("succeeded", "failed")


class MessageError(ValueError):
    """A stream entry that is not a message or result Treadle wrote (junk, a forgery, a
    version it does not know): set aside, never applied."""


SECRET_ENV_PREFIX = "TREADLE_SECRET_"


def secret_env_name(secret: str, key: str) -> str:
    """The worker pod's environment variable that carries one Secret key (header values from
    Secrets reach the worker this way, never through Redis)."""
    return SECRET_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", f"{secret}__{key}").upper()


def idempotency_key(workflow_uid: str, task: str, item: int | None, run: int | None = None) -> str:
    """`<workflow uid>/g<run generation>/<task>/<item index>`; a task without forEach has item
    `-`.  Its success is recorded under this key (so a success of *any* attempt of this run
    counts, and no later attempt runs again); a failure under `<key>#<attempt>`.  A run
    started before run generations existed has keys without the `g<n>/` part."""
    run_part = "" if run is None else f"g{run}/"
    return f"{workflow_uid}/{run_part}{task}/{'-' if item is None else item}"


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
    run: int | None = None
    """The run generation of the workflow this attempt belongs to (status.runGeneration)."""

    @property
    def key(self) -> str:
        return idempotency_key(self.workflow_uid, self.task, self.item, self.run)

    def identity(self) -> dict[str, Any]:
        """Which attempt this is, as its result and start name it."""
        return {
            "workflow_uid": self.workflow_uid,
            "workflow": self.workflow,
            "task": self.task,
            "item": self.item,
            "attempt": self.attempt,
            "run": self.run,
        }

    def failure(self, error: str, finished_at: float = 0.0) -> TaskResult:
        """This attempt failed with `error`, as the operator reports it for an attempt that
        could not report itself (a poison message, a Job that could not be made)."""
        return TaskResult(
            workflow_uid=self.workflow_uid,
            workflow=self.workflow,
            task=self.task,
            item=self.item,
            attempt=self.attempt,
            outcome="failed",
            error=error,
            finished_at=finished_at,
            run=self.run,
        )

    @property
    def namespace(self) -> str:
        """The workflow's namespace: its breakers and buckets are that namespace's."""
        return self.workflow.partition("/")[0]

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
            "run": "" if self.run is None else str(self.run),
        }

    @classmethod
    def decode(cls, fields: Fields) -> TaskMessage:
        try:
            message = cls(
                workflow_uid=fields["uid"],
                workflow=fields["workflow"],
                task=fields["task"],
                item=int(fields["item"]) if fields.get("item") else None,
                attempt=int(fields["attempt"]),
                action=json.loads(fields["action"]),
                timeout_seconds=float(fields.get("timeout", "60")),
                redeliveries=int(fields.get("redeliveries", "0")),
                guards=json.loads(fields.get("guards") or "{}"),
                run=int(fields["run"]) if fields.get("run") else None,
            )
        except (KeyError, TypeError, ValueError, RecursionError) as error:
            raise MessageError(f"not a task message: {type(error).__name__}: {error}") from error
        if not isinstance(message.action, dict) or not isinstance(message.guards, dict):
            raise MessageError("not a task message: action and guards must be objects")
        return message


INLINE_OUTPUT_LIMIT_BYTES = 4096
"""Largest output (as JSON) carried in a result besides its stored copy, and so the largest one
status may hold inline (within the workflow's inline budget); every output is stored in Redis,
and status holds a reference to those it does not inline."""


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
    """Where the output is stored (in Redis); `output` then holds a copy only when it is small
    (INLINE_OUTPUT_LIMIT_BYTES), else None."""
    run: int | None = None
    """The run generation of the attempt (its message's)."""
    log: str | None = None
    """What the attempt wrote, until the worker stores it (never published: `log_ref`)."""
    log_ref: str | None = None
    """Where the attempt's log is stored (in Redis); None: it wrote nothing."""
    worker: str | None = None
    """The worker (its pod's name) that ran the attempt."""

    @property
    def key(self) -> str:
        return idempotency_key(self.workflow_uid, self.task, self.item, self.run)

    def stored_at(self, ref: str, *, keep_copy: bool) -> TaskResult:
        """This result with its output stored under `ref` (and a copy kept when small)."""
        return dataclasses.replace(self, output=self.output if keep_copy else None, output_ref=ref)

    def encode(self) -> Fields:
        body = asdict(self)
        return {"key": self.key, "uid": self.workflow_uid, "result": json.dumps(body)}

    @classmethod
    def decode(cls, fields: Fields) -> TaskResult:
        """The result a worker published; MessageError for anything else.  A result whose
        output, error or details could not go into status (too deep, not JSON, not Unicode: a
        worker's task code can write any entry) is the attempt's failure, saying why."""
        try:
            body = json.loads(fields["result"])
        except (KeyError, TypeError, ValueError) as error:
            raise MessageError(f"not a task result: {type(error).__name__}: {error}") from error
        except RecursionError as error:
            raise MessageError("not a task result: it nests too deep to read") from error
        if not isinstance(body, dict):
            raise MessageError("not a task result: the result field is no JSON object")
        problems = [f"{name}: {kind}" for name, kind, ok in _result_checks(body) if not ok]
        if problems:
            raise MessageError(f"not a task result: {'; '.join(problems)}")
        unknown = sorted(set(body) - _RESULT_FIELDS)
        if unknown:
            raise MessageError(f"not a task result: unknown field {unknown[0]!r}")
        if jsonvalues.fit(body, jsonvalues.MAX_DEPTH + 1) is not None:
            body = _refused(body)
        result = cls(**body)
        if fields.get("key") not in (None, result.key):
            raise MessageError("not a task result: its key does not match its body")
        return result


WORKER_NAME_LIMIT = 253
"""The longest worker name a result or start may carry (a pod's name is at most this)."""


@dataclass(frozen=True)
class TaskStart:
    """An attempt that began on a worker.  Workers tell it only of attempts still running a
    moment after they began (`START_NOTICE_SECONDS`): a short attempt's result says it all,
    so the hot path pays nothing for it."""

    workflow_uid: str
    workflow: str
    task: str
    item: int | None
    attempt: int
    run: int | None
    worker: str
    started_at: float
    waiting: str | None = None
    """Set when the attempt has not begun yet, saying why (a Job held for admission by a
    queue, its pod not yet pulled or scheduled): its task stays Queued and says so."""

    @classmethod
    def of(cls, message: TaskMessage, worker: str, started_at: float) -> TaskStart:
        """The start of `message`'s attempt on `worker`."""
        return cls(**message.identity(), worker=worker, started_at=started_at)

    @property
    def key(self) -> str:
        return idempotency_key(self.workflow_uid, self.task, self.item, self.run)

    def encode(self) -> Fields:
        body = asdict(self)
        if self.waiting is None:
            del body["waiting"]  # what workers send: the fields of a start before it had one
        return {"key": self.key, "uid": self.workflow_uid, "started": json.dumps(body)}

    @classmethod
    def decode(cls, fields: Fields) -> TaskStart:
        try:
            body = json.loads(fields["started"])
        except (KeyError, TypeError, ValueError, RecursionError) as error:
            raise MessageError(f"not a task start: {type(error).__name__}") from error
        if not isinstance(body, dict) or set(body) not in (_START_FIELDS, _BEGUN_FIELDS):
            raise MessageError("not a task start: its fields are not a start's")
        problems = [f"{name}: {kind}" for name, kind, ok in _start_checks(body) if not ok]
        if problems:
            raise MessageError(f"not a task start: {'; '.join(problems)}")
        start = cls(**body)
        if fields.get("key") != start.key:
            raise MessageError("not a task start: its key does not match its body")
        return start


Report = TaskResult | TaskStart
"""What a worker tells the operator on its pool's result stream."""


def decode_report(fields: Fields) -> Report:
    """A result or a start, as a worker published it; MessageError for anything else."""
    if "started" in fields:
        return TaskStart.decode(fields)
    return TaskResult.decode(fields)


_START_FIELDS = frozenset(f.name for f in dataclasses.fields(TaskStart))
_BEGUN_FIELDS = _START_FIELDS - {"waiting"}
_RESULT_FIELDS = frozenset(f.name for f in dataclasses.fields(TaskResult))
_IDENTITY = ("workflow_uid", "workflow", "task", "item", "attempt", "run")


def _refused(body: dict[str, Any]) -> dict[str, Any]:
    """A result body that cannot go into status, as the failure of its attempt."""
    kept = {name: body[name] for name in _IDENTITY if name in body}
    if (problem := jsonvalues.fit(kept)) is not None:
        raise MessageError(f"not a task result: its identity {problem}")
    found = [
        f"its {name} {problem}"
        for name in ("output", "error", "details", "output_ref", "log_ref")
        if (problem := jsonvalues.fit(body.get(name))) is not None
    ]
    return {
        **kept,
        "outcome": "failed",
        "error": f"the attempt's result was refused: {'; '.join(found)}",
        "started_at": _finite(body.get("started_at")),
        "finished_at": _finite(body.get("finished_at")),
    }


def _finite(value: Any) -> float:
    return float(value) if _is_number(value) and math.isfinite(value) else 0.0


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _identity_checks(body: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Which attempt a result or start is of."""
    get = body.get
    return [
        ("workflow_uid", "a string", isinstance(get("workflow_uid"), str)),
        ("workflow", "a string", isinstance(get("workflow"), str)),
        ("task", "a string", isinstance(get("task"), str)),
        ("item", "an integer or null", get("item") is None or _is_int(get("item"))),
        ("attempt", "a positive integer", _is_int(get("attempt")) and body["attempt"] >= 1),
        ("run", "an integer or null", get("run") is None or _is_int(get("run"))),
    ]


def _result_checks(body: dict[str, Any]) -> list[tuple[str, str, bool]]:
    get = body.get
    return [
        *_identity_checks(body),
        ("outcome", " or ".join(OUTCOMES), get("outcome") in OUTCOMES),
        ("error", "a string or null", get("error") is None or isinstance(get("error"), str)),
        ("started_at", "a number", _is_number(get("started_at", 0.0))),
        ("finished_at", "a number", _is_number(get("finished_at", 0.0))),
        ("details", "an object", isinstance(get("details", {}), dict)),
        (
            "output_ref",
            "a string or null",
            get("output_ref") is None or isinstance(get("output_ref"), str),
        ),
        ("log", "null", get("log") is None),
        ("log_ref", "a string or null", get("log_ref") is None or isinstance(get("log_ref"), str)),
        ("worker", "a short string or null", get("worker") is None or _is_name(get("worker"))),
    ]


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= WORKER_NAME_LIMIT


def _start_checks(body: dict[str, Any]) -> list[tuple[str, str, bool]]:
    get = body.get
    return [
        *_identity_checks(body),
        ("worker", "a short string", _is_name(get("worker"))),
        (
            "waiting",
            "a short string or null",
            get("waiting") is None or _is_name(get("waiting")),
        ),
        (
            "started_at",
            "a finite number",
            _is_number(get("started_at")) and math.isfinite(body["started_at"]),
        ),
    ]
