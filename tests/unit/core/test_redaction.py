"""Errors copied into status and Events carry no URL user-info, query strings or tokens
(issue #13, problem 6)."""

from __future__ import annotations

import pytest

from treadle.core import syncadmission
from treadle.core.redaction import MAX_ERROR_CHARS, redact


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        ("GET https://bob:hunter2@api.test/v1?token=abc&x=1 failed: 401",
         "GET https://***@api.test/v1?*** failed: 401"),
        ("redis://:pw@10.0.0.1:6379/0 refused", "redis://***@10.0.0.1:6379/0 refused"),
        ("sent Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x.y", "sent Authorization: Bearer ***"),
        ("bad password=letmein; retry", "bad password=***; retry"),
        ("https://api.test/v1/users/3 answered 500", "https://api.test/v1/users/3 answered 500"),
        ("header Authorization: key 'token' of Secret 'api' is missing",
         "header Authorization: key 'token' of Secret 'api' is missing"),
        # issue #31: a password holding `@` leaked its tail past the first `@`
        ("https://bob:p@ss@w0rd@db.test/x failed", "https://***@db.test/x failed"),
        ("postgres://u:a@b@10.0.0.2:5432/db?sslmode=off", "postgres://***@10.0.0.2:5432/db?***"),
    ],
)  # fmt: skip
def test_credentials_are_cut_from_errors(error: str, shown: str) -> None:
    assert redact(error) == shown


def test_a_long_error_is_bounded() -> None:
    shown = redact("x" * 100_000)
    assert len(shown) < MAX_ERROR_CHARS + 50
    assert shown.endswith("(97952 more)")


def test_a_table_name_that_is_no_lease_name_is_refused_at_apply_time() -> None:
    spec = {"schedule": "* * * * *", "tables": ["a..b"],
            "template": {"spec": {"containers": [{"name": "c", "command": ["true"]}]}}}  # fmt: skip
    [problem] = syncadmission.syncjob_problems(spec)
    assert problem.startswith("spec.tables[0]: String should match pattern")


def test_a_secret_value_a_server_echoes_back_is_masked_before_it_reaches_status() -> None:
    """Issue #31, problem 4: `401 invalid api key <key>` landed in status, dead letters and
    Events (only logs were masked)."""
    from treadle.core import tasklogs

    error = "POST https://api.test/v1 answered 401: invalid api key sk-live-7d9a2f"
    masked = redact(tasklogs.mask(error, ["sk-live-7d9a2f", "ab"]))
    assert masked == "POST https://api.test/v1 answered 401: invalid api key ***"
