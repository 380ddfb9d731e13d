"""A task attempt's log: what the attempt wrote (a command's stdout and stderr as they came, a
python task's prints and logging, an http task's request and answer), kept to its last
LOG_LIMIT_BYTES with a note when the start was cut, and redacted before it leaves the worker
(the people who read logs may not read the Secrets the task used).

Keys and storage are the queue's (treadle.services.queues); this module only decides what text
an attempt's log is."""

from __future__ import annotations

from collections.abc import Iterable

from treadle.core import redaction

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
        self._kept = bytearray()

    def write(self, data: bytes | str) -> None:
        self._kept += data.encode(errors="replace") if isinstance(data, str) else data
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
    for value in sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True):
        text = text.replace(value, redaction.MASK)
    return redaction.redact(text, max_chars=None)
