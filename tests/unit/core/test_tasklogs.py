"""An attempt's log is bounded to its last 256 KiB, says when its start was cut, and shows no
Secret value or URL credential (SPEC, The kubectl plugin: logs)."""

from __future__ import annotations

from treadle.core import tasklogs


def test_a_log_within_the_bound_is_kept_whole() -> None:
    log = tasklogs.LogTail()
    log.write(b"one\n")
    log.write("two\n")
    assert log.text() == "one\ntwo\n"


def test_an_attempt_that_wrote_nothing_has_no_log() -> None:
    assert tasklogs.LogTail().text() is None


def test_a_long_log_keeps_its_end_and_says_how_much_was_cut() -> None:
    log = tasklogs.LogTail(limit=10)
    log.write(b"0123456789")
    log.write(b"abcde")
    text = log.text()
    assert text is not None
    assert text.endswith("56789abcde")
    assert text.startswith("[treadle: the first 5 bytes of this attempt's log were cut")
    assert log.dropped == 5


def test_a_default_log_holds_at_most_256_kib() -> None:
    log = tasklogs.LogTail()
    for _ in range(100):
        log.write(b"x" * 10_000)
    assert len(log) == 256 * 1024
    assert log.dropped == 1_000_000 - 256 * 1024


def test_secret_values_the_worker_holds_are_masked() -> None:
    log = tasklogs.LogTail()
    log.write("connecting with s3cr3t-value and again s3cr3t-value\n")
    assert log.text(["s3cr3t-value", "ab"]) == "connecting with *** and again ***\n"


def test_url_credentials_and_query_strings_are_cut_but_the_log_is_not_shortened() -> None:
    long_line = "y" * 5000
    text = tasklogs.redact(f"GET https://user:pw@api.example.com/v1?token=abc\n{long_line}\n")
    assert "pw" not in text
    assert "token=abc" not in text
    assert "https://***@api.example.com/v1?***" in text
    assert text.endswith(long_line + "\n")
