"""How `kubectl treadle logs` prints attempts, and follows them as they write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from treadle.plugin import logs


def entry(task: str, attempt: int, text: str | None, *, ended: bool = True, **more: Any) -> Any:
    found = {"task": task, "attempt": attempt, "ended": ended, "stored": text is not None}
    if text is not None:
        found["log"] = text
    return {**found, **more}


def test_each_attempt_is_printed_under_a_heading() -> None:
    printed = logs.render(
        [entry("say", 1, "hello\n"), entry("each", 2, "no newline", item=3)], headings=True
    )
    assert printed == "==> say attempt 1 <==\nhello\n==> each[3] attempt 2 <==\nno newline\n"


def test_an_attempt_without_a_log_says_why() -> None:
    assert "wrote nothing" in logs.render([entry("t", 1, None)], headings=False)
    assert "not ended yet" in logs.render([entry("t", 1, None, ended=False)], headings=False)


def answers(*steps: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from steps


def test_following_prints_what_a_running_attempt_adds_then_ends_with_the_workflow() -> None:
    steps = answers(
        {"phase": "Running", "attempts": [entry("a", 1, "one\n", ended=False, live=True)]},
        {"phase": "Running", "attempts": [entry("a", 1, "one\ntwo\n", ended=False, live=True)]},
        {
            "phase": "Running",
            "attempts": [entry("a", 1, "one\ntwo\n"), entry("b", 1, None, ended=False)],
        },
        {"phase": "Failed", "attempts": [entry("a", 1, "one\ntwo\n"), entry("b", 1, "boom\n")]},
    )
    written: list[str] = []
    code = logs.follow(lambda: next(steps), written.append, poll_seconds=0)
    assert "".join(written) == "==> a attempt 1 <==\none\ntwo\n==> b attempt 1 <==\nboom\n"
    assert code == 1


def test_following_names_the_attempt_again_when_another_wrote_in_between() -> None:
    steps = answers(
        {
            "phase": "Running",
            "attempts": [
                entry("a", 1, "a1\n", ended=False, live=True),
                entry("b", 1, "b1\n", ended=False, live=True),
            ],
        },
        {"phase": "Succeeded", "attempts": [entry("a", 1, "a1\na2\n"), entry("b", 1, "b1\n")]},
    )
    written: list[str] = []
    assert logs.follow(lambda: next(steps), written.append, poll_seconds=0) == 0
    assert "".join(written) == (
        "==> a attempt 1 <==\na1\n==> b attempt 1 <==\nb1\n==> a attempt 1 <==\na2\n"
    )


def test_a_log_whose_start_was_cut_while_followed_is_printed_again_whole() -> None:
    steps = answers(
        {"phase": "Running", "attempts": [entry("a", 1, "old\n", ended=False, live=True)]},
        {"phase": "Succeeded", "attempts": [entry("a", 1, "[cut]\nnew\n")]},
    )
    written: list[str] = []
    logs.follow(lambda: next(steps), written.append, poll_seconds=0)
    assert "".join(written) == "==> a attempt 1 <==\nold\n[...]\n[cut]\nnew\n"
