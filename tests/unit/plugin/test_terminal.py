"""What others wrote cannot drive the terminal of whoever reads it with the plugin (issue #31,
problem 4: raw escapes from task output reached `kubectl treadle get` and `logs` users)."""

from __future__ import annotations

from typing import Any

from treadle.plugin import logs, terminal, view

ATTACK = "ok\x1b]2;pwned\x07\x1b[2J\rfake line\x9b31m"


def test_control_characters_are_shown_not_sent_and_tabs_and_newlines_stay() -> None:
    assert terminal.safe(ATTACK) == "ok^[]2;pwned^G^[[2J^Mfake line\\u009b31m"
    assert terminal.safe("a\tb\nc") == "a\tb\nc"


def test_logs_print_an_attempts_escapes_as_text() -> None:
    entry = {"task": "t", "item": None, "attempt": 1, "log": ATTACK + "\n", "ended": True,
             "stored": True}  # fmt: skip
    printed = terminal.safe(logs.render([entry], headings=True))
    for control in ("\x1b", "\r", "\x9b"):
        assert control not in printed


def test_get_shows_an_error_and_output_with_escapes_as_text() -> None:
    workflow: dict[str, Any] = {
        "metadata": {"name": "wf", "namespace": "ns"},
        "spec": {"tasks": [{"name": "t", "command": {"args": ["true"]}}]},
        "status": {
            "phase": "Failed",
            "message": ATTACK,
            "tasks": {"t": {"phase": "Failed", "error": ATTACK, "output": ATTACK}},
        },
    }
    lines = view.render(workflow, wide=True)
    assert lines
    for line in lines:
        for control in ("\x1b", "\r", "\x9b"):
            assert control not in line
