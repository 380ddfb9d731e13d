"""Which failures `retry.retryOn` retries, and how long a Retry-After makes a retry wait."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from treadle.core import causes
from treadle.core.causes import Cause


@pytest.mark.parametrize(
    ("status", "rules", "retried"),
    [
        (503, None, True),
        (429, None, True),
        (500, None, True),
        (404, None, False),
        (400, None, False),
        (404, ["4xx"], True),
        (409, [409], True),
        (500, [409], False),
        (502, ["502"], True),
    ],
)
def test_http_statuses_are_retried_by_code_or_class(
    status: int, rules: list[int | str] | None, retried: bool
) -> None:
    why = causes.refusal(Cause("httpStatus", status=status), http_status=rules)
    assert (why is None) is retried
    if not retried:
        assert f"HTTP {status}" in str(why)
        assert "retry.retryOn.httpStatus" in str(why)


def test_connection_errors_and_timeouts_are_always_retried() -> None:
    for kind in ("connection", "timeout"):
        assert causes.refusal(Cause(kind), http_status=[418], exit_codes=[3]) is None  # type: ignore[arg-type]


def test_exit_codes_default_to_any_non_zero_and_may_be_narrowed() -> None:
    assert causes.refusal(Cause("exit", exit_code=7)) is None
    assert causes.refusal(Cause("exit", exit_code=7), exit_codes=[1, 2]) == (
        "exit code 7 is not in retry.retryOn.exitCodes (1, 2)"
    )
    assert causes.refusal(Cause("exit", exit_code=2), exit_codes=[1, 2]) is None


def test_exceptions_match_the_class_or_any_base_named() -> None:
    raised = Cause("exception", exceptions=("ConnectTimeout", "TimeoutError", "OSError"))
    assert causes.refusal(raised, exceptions=["OSError"]) is None
    assert causes.refusal(raised) is None
    assert causes.refusal(raised, exceptions=["KeyError"]) == (
        "ConnectTimeout is not in retry.retryOn.exceptions (KeyError)"
    )


def test_a_failure_without_a_named_cause_is_retried() -> None:
    assert causes.refusal(None, http_status=[], exit_codes=[], exceptions=[]) is None


def test_retry_after_lengthens_the_wait_within_the_cap() -> None:
    asked = Cause("httpStatus", status=429, retry_after=12.0)
    assert causes.wait_seconds(asked, 1.0, 30.0) == 12.0
    assert causes.wait_seconds(asked, 20.0, 30.0) == 20.0  # the backoff was longer already
    assert (
        causes.wait_seconds(Cause("httpStatus", status=503, retry_after=900.0), 1.0, 30.0) == 30.0
    )
    assert causes.wait_seconds(Cause("httpStatus", status=500, retry_after=12.0), 1.0, 30.0) == 1.0


def test_retry_after_reads_seconds_or_an_http_date() -> None:
    now = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
    assert causes.parse_retry_after("120", now) == 120.0
    assert causes.parse_retry_after("Thu, 03 Dec 2026 10:00:30 GMT", now) == 30.0
    assert causes.parse_retry_after("Thu, 03 Dec 2026 09:00:00 GMT", now) == 0.0
    assert causes.parse_retry_after("soon", now) is None
    assert causes.parse_retry_after(None, now) is None
    assert causes.parse_retry_after("99999999", now) == causes.MAX_RETRY_AFTER_SECONDS


def test_a_cause_round_trips_and_junk_from_a_worker_reads_as_none() -> None:
    cause = Cause("httpStatus", status=429, retry_after=3.0)
    assert Cause.of(cause.wire()) == cause
    assert Cause.of({"cause": "exit", "exitCode": 2}) == Cause("exit", exit_code=2)
    assert Cause.of({}) is None
    assert Cause.of({"cause": "meteor"}) is None
    odd = Cause.of({"cause": "httpStatus", "status": "503", "retryAfter": True})
    assert odd == Cause("httpStatus")
    assert causes.refusal(odd, http_status=[]) is None  # no status: nothing to judge it by
