"""A task attempt's log: what the attempt wrote (a command's stdout and stderr as they came, a
python task's prints and logging, an http task's request and answer), kept to its last
LOG_LIMIT_BYTES with a note when the start was cut, and redacted before it leaves the worker
(the people who read logs may not read the Secrets the task used).

Keys and storage are the queue's (treadle.services.queues); this module only decides what text
an attempt's log is."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from treadle.api.workflows import TaskStatus, WorkflowStatus
from treadle.core import actions, ranges, redaction

LOG_LIMIT_BYTES = 256 * 1024
"""Each attempt keeps the last 256 KiB of what it wrote."""
WORKFLOW_LOG_BUDGET_BYTES = 64 * 1024 * 1024
"""All the logs one workflow keeps together (a 10,000-child forEach cannot fill Redis): past
it, an attempt's log is replaced by a note saying so."""
MIN_SECRET_CHARS = 4
"""Secret values shorter than this are not masked (masking every `a` would hide the log)."""


def cut_note(dropped: int) -> str:
    return (
        f"[treadle: the first {dropped} bytes of this attempt's log were cut; "
        f"the last {LOG_LIMIT_BYTES // 1024} KiB are kept]\n"
    )


def over_budget_note(budget: int = WORKFLOW_LOG_BUDGET_BYTES) -> str:
    return (
        f"[treadle: this attempt's log was not kept: the workflow's logs reached "
        f"{budget // (1024 * 1024)} MiB]\n"
    )


class LogTail:
    """What an attempt wrote, holding at most `limit` bytes: the oldest bytes go first."""

    def __init__(self, limit: int = LOG_LIMIT_BYTES) -> None:
        self.limit = limit
        self.dropped = 0
        self.written = 0
        """Bytes written in all (a change means there is more to show)."""
        self._kept = bytearray()

    def write(self, data: bytes | str) -> None:
        chunk = data.encode(errors="replace") if isinstance(data, str) else data
        self._kept += chunk
        self.written += len(chunk)
        excess = len(self._kept) - self.limit
        if excess > 0:
            del self._kept[:excess]
            self.dropped += excess

    def __len__(self) -> int:
        return len(self._kept)

    def text(self, secrets: Iterable[str] = ()) -> str | None:
        """The log as text (a cut multi-byte character replaced), with the cut noted and
        credentials masked; None when the attempt wrote nothing."""
        if not self._kept and not self.dropped:
            return None
        body = self._kept.decode(errors="replace")
        if self.dropped:
            body = cut_note(self.dropped) + body
        return redact(body, secrets)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """The log with the values of the Secrets the worker holds masked, then URL credentials,
    query strings and credential-like pairs cut as in error messages (not shortened)."""
    return redaction.redact(mask(text, secrets), max_chars=None)


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every value of `secrets` (of MIN_SECRET_CHARS or more) masked."""
    for value in sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True):
        text = text.replace(value, redaction.MASK)
    return text


IN_FLIGHT = ("Queued", "Running")
MAX_ATTEMPTS_PER_ANSWER = 200
"""Logs one answer of the log API holds at most (a 10,000-child forEach is read child by
child); `truncated` says more were left out."""
MAX_ANSWER_BYTES = 8 * 1024 * 1024
"""The log text one answer holds at most."""


@dataclass(frozen=True)
class Address:
    """One attempt whose log may be stored."""

    task: str
    item: int | None
    attempt: int
    ended: bool = True
    """False: the attempt may still be queued or running (its log is stored when it ends)."""


def addresses(
    status: WorkflowStatus,
    task: str | None = None,
    item: int | None = None,
    attempt: int | None = None,
    order: Sequence[str] = (),
    ended: bool = False,
) -> list[Address]:
    """The attempts a workflow's status says were made, in `order` (the spec's task order;
    others after), children in index order, attempts in the order they were made: of one
    `task`, one forEach child `item`, one `attempt` when asked.  Attempts that were only
    queued are listed too (their logs are stored once they end); once the workflow has `ended`,
    so has every attempt (one its termination cancelled may still say Running)."""
    found: list[Address] = []
    rank = {name: index for index, name in enumerate(order)}
    for name, entry in sorted(status.tasks.items(), key=lambda t: rank.get(t[0], len(rank))):
        if task is not None and name != task:
            continue
        if entry.items is None:
            if item is None:
                count = entry.attempts or 0
                busy = entry.phase in IN_FLIGHT and not ended
                found += [
                    Address(name, None, n, ended=n < count or not busy)
                    for n in _made(count, attempt)
                ]
            continue
        made = ranges.decode_map(entry.item_attempts)
        running = ranges.decode(entry.running_items)
        launched = _launched(entry, made, running)
        for index in sorted(launched) if item is None else [item]:
            if index in launched:
                count = int(made.get(index, 1))
                busy = index in running and not ended
                found += [
                    Address(name, index, n, ended=n < count or not busy)
                    for n in _made(count, attempt)
                ]
    return found


def _launched(entry: TaskStatus, made: dict[int, str], running: set[int]) -> set[int]:
    """The forEach children that had an attempt: those below the next to launch, and those
    any of the task's index ranges names (the next is unset once all were launched)."""
    launched = set(range(entry.next_item or 0)) | running | set(made)
    for ranged in (entry.done_items, entry.dead_items):
        launched |= ranges.decode(ranged)
    launched |= set(ranges.decode_map(entry.retry_at))
    return launched


def _made(count: int, asked: int | None) -> list[int]:
    if asked is None:
        return list(range(1, count + 1))
    return [asked] if 1 <= asked <= count else []


def running_pod(
    status: WorkflowStatus, spec: Mapping[str, Any] | None, address: Address
) -> str | None:
    """The pod whose log is the live log of this attempt: a `job` task's attempt (not a
    forEach child) running on its pod now.  Its log is read from the pod until it ends and is
    stored."""
    entry = status.tasks.get(address.task)
    if entry is None or address.item is not None or entry.phase != "Running":
        return None
    if entry.attempts != address.attempt or not entry.worker:
        return None
    if not own_pod_task(status, spec, address.task):
        return None
    return entry.worker.split(" ", 1)[0]  # "<pod> on <node>": a pod's name has no space


def own_pod_task(status: WorkflowStatus, spec: Mapping[str, Any] | None, task: str) -> bool:
    """Whether the task (of the spec, or of the template its run froze) runs in pods of its
    own."""
    raw = status.template_spec or spec or {}
    tasks = [*(raw.get("tasks") or []), *(raw.get("onExit") or [])]
    found = next((t for t in tasks if isinstance(t, Mapping) and t.get("name") == task), None)
    return found is not None and actions.raw_own_pod(found)
