"""An attempt's log is bounded to its last 256 KiB, says when its start was cut, and shows no
Secret value or URL credential (SPEC, The kubectl plugin: logs)."""

from __future__ import annotations

from treadle.api.workflows import WorkflowStatus
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


def status(tasks: dict[str, dict[str, object]]) -> WorkflowStatus:
    return WorkflowStatus.of({"tasks": tasks})


def test_every_attempt_of_every_task_is_addressed_in_the_specs_order() -> None:
    current = status(
        {
            "b": {"phase": "Succeeded", "attempts": 2},
            "a": {"phase": "Running", "attempts": 1},
        }
    )
    found = tasklogs.addresses(current, order=["a", "b"])
    assert found == [
        tasklogs.Address("a", None, 1, ended=False),
        tasklogs.Address("b", None, 1),
        tasklogs.Address("b", None, 2),
    ]


def test_a_retrying_tasks_last_attempt_has_ended() -> None:
    current = status({"t": {"phase": "Retrying", "attempts": 2}})
    assert [a.ended for a in tasklogs.addresses(current)] == [True, True]


def test_forEach_children_are_addressed_by_index_with_their_own_attempt_counts() -> None:
    current = status(
        {
            "each": {
                "phase": "Running",
                "items": 5,
                "nextItem": 4,
                "doneItems": "0,2",
                "runningItems": "1,3",
                "itemAttempts": {"3": "3"},
            }
        }
    )
    found = tasklogs.addresses(current, "each")
    assert [(a.item, a.attempt, a.ended) for a in found] == [
        (0, 1, True),
        (1, 1, False),
        (2, 1, True),
        (3, 1, True),
        (3, 2, True),
        (3, 3, False),
    ]
    assert tasklogs.addresses(current, "each", item=3, attempt=2) == [
        tasklogs.Address("each", 3, 2)
    ]
    assert tasklogs.addresses(current, "each", item=4) == []  # not launched yet


def test_a_finished_forEach_is_addressed_by_its_ranges() -> None:
    current = status(
        {"each": {"phase": "Succeeded", "items": 3, "doneItems": "0-1", "deadItems": "2"}}
    )
    assert [a.item for a in tasklogs.addresses(current)] == [0, 1, 2]


def test_an_attempt_never_made_is_not_addressed() -> None:
    current = status({"t": {"phase": "Succeeded", "attempts": 1}})
    assert tasklogs.addresses(current, "t", attempt=2) == []
    assert tasklogs.addresses(current, "other") == []


def test_once_the_workflow_has_ended_so_has_every_attempt() -> None:
    current = status(
        {
            "t": {"phase": "Running", "attempts": 1},
            "each": {"phase": "Running", "items": 2, "nextItem": 2, "runningItems": "0-1"},
        }
    )
    assert all(a.ended for a in tasklogs.addresses(current, ended=True))
    assert not any(a.ended for a in tasklogs.addresses(current))
