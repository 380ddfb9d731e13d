"""Why an attempt failed, and whether that failure is worth another attempt (SPEC: `retry.retryOn`).

The worker names the cause of each failure it reports (a result's `details`): the HTTP status
and any `Retry-After`, a command's exit code, the classes of a Python exception, a connection
error or a timeout.  The engine then asks `refusal` whether the task's rules retry it; a failure
they do not retry is dead-lettered at once, naming why, instead of spending attempts that cannot
help (a 404 stays a 404).  A cause the worker did not name (an older worker, a pod that never
started, a template) is retried as before: nothing is given up on by default that was kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

CauseKind = Literal["httpStatus", "exit", "exception", "connection", "timeout"]
KINDS: tuple[CauseKind, ...] = ("httpStatus", "exit", "exception", "connection", "timeout")

HTTP_CLASS = re.compile(r"^[1-5]xx$")
DEFAULT_HTTP_STATUS: tuple[int | str, ...] = (429, "5xx")
"""SPEC: retried by default: too many requests and server errors (and connection errors)."""
RETRY_AFTER_STATUSES = (429, 503)
MAX_RETRY_AFTER_SECONDS = 86_400.0
MAX_EXCEPTION_NAMES = 16
"""How many classes of an exception's ancestry a worker names (its own first)."""


@dataclass(frozen=True)
class Cause:
    """What made one attempt fail, as its worker saw it."""

    kind: CauseKind
    status: int | None = None
    """The HTTP status (kind httpStatus)."""
    exit_code: int | None = None
    """The command's exit code (kind exit)."""
    exceptions: tuple[str, ...] = ()
    """The exception's class and its bases' names, its own first (kind exception)."""
    retry_after: float | None = None
    """Seconds the server asked to wait (`Retry-After` of a 429 or 503)."""

    def wire(self) -> dict[str, Any]:
        """As a result's `details` carry it."""
        body: dict[str, Any] = {"cause": self.kind}
        if self.status is not None:
            body["status"] = self.status
        if self.exit_code is not None:
            body["exitCode"] = self.exit_code
        if self.exceptions:
            body["exceptions"] = list(self.exceptions)
        if self.retry_after is not None:
            body["retryAfter"] = self.retry_after
        return body

    @classmethod
    def of(cls, details: Mapping[str, Any] | None) -> Cause | None:
        """From a result's `details`; None when they name no cause this engine reads (a
        result is input from a worker: anything malformed counts as no cause)."""
        if not details or details.get("cause") not in KINDS:
            return None
        status, code = details.get("status"), details.get("exitCode")
        names, wait = details.get("exceptions"), details.get("retryAfter")
        return cls(
            kind=details["cause"],
            status=status if _is_int(status) else None,
            exit_code=code if _is_int(code) else None,
            exceptions=tuple(
                str(n)[:200]
                for n in (names if isinstance(names, list) else [])[:MAX_EXCEPTION_NAMES]
            ),
            retry_after=(
                min(max(float(wait), 0.0), MAX_RETRY_AFTER_SECONDS)
                if isinstance(wait, (int, float)) and not isinstance(wait, bool)
                else None
            ),
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def status_matches(status: int, rules: Sequence[int | str]) -> bool:
    """Whether an HTTP status is one of `rules`: codes (`503`) or classes (`5xx`)."""
    for rule in rules:
        if isinstance(rule, int) and rule == status:
            return True
        if isinstance(rule, str) and HTTP_CLASS.match(rule) and status // 100 == int(rule[0]):
            return True
        if isinstance(rule, str) and rule.isdigit() and int(rule) == status:
            return True
    return False


def refusal(
    cause: Cause | None,
    *,
    http_status: Sequence[int | str] | None = None,
    exit_codes: Sequence[int] | None = None,
    exceptions: Sequence[str] | None = None,
) -> str | None:
    """Why this failure is not retried under the task's `retry.retryOn` (its three lists, None
    where unset), or None when it is.  Defaults: HTTP 429 and 5xx, any non-zero exit code,
    any exception; connection errors and timeouts are always retried."""
    if cause is None or cause.kind in ("connection", "timeout"):
        return None
    if cause.kind == "httpStatus" and cause.status is not None:
        rules = DEFAULT_HTTP_STATUS if http_status is None else tuple(http_status)
        if status_matches(cause.status, rules):
            return None
        return f"HTTP {cause.status} is not in retry.retryOn.httpStatus ({_shown(rules)})"
    if cause.kind == "exit" and cause.exit_code is not None and exit_codes is not None:
        if cause.exit_code in exit_codes:
            return None
        return (
            f"exit code {cause.exit_code} is not in retry.retryOn.exitCodes ({_shown(exit_codes)})"
        )
    if cause.kind == "exception" and cause.exceptions and exceptions is not None:
        if set(cause.exceptions) & set(exceptions):
            return None
        return f"{cause.exceptions[0]} is not in retry.retryOn.exceptions ({_shown(exceptions)})"
    return None


def _shown(values: Sequence[Any]) -> str:
    return ", ".join(str(value) for value in values) or "none"


def wait_seconds(cause: Cause | None, backoff_seconds: float, max_seconds: float) -> float:
    """How long until the next attempt: the backoff, or what a 429 or 503 asked for when that
    is longer (capped by the backoff's `maxDurationSeconds`)."""
    if cause is None or cause.retry_after is None or cause.status not in RETRY_AFTER_STATUSES:
        return backoff_seconds
    return max(backoff_seconds, min(cause.retry_after, max_seconds))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A `Retry-After` header as seconds from now: delay-seconds or an HTTP date; None when
    absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
