"""The worker keeps what each attempt wrote: a command's stdout and stderr, a python task's
prints, logging and traceback, an http task's request and answer (SPEC, The kubectl plugin:
logs)."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from treadle.worker import capture
from treadle.worker import runners as actions


def attempt() -> actions.Attempt:
    def no_session() -> None:
        raise AssertionError("no http here")

    return actions.Attempt(10, "uid/t/-", no_session)  # type: ignore[arg-type]


async def test_a_commands_stdout_and_stderr_are_both_in_its_log() -> None:
    run = attempt()
    script = "echo err-line >&2; echo '{\"n\": 1}'"
    assert await actions.run_command({"args": ["sh", "-c", script]}, run) == {"n": 1}
    text = run.log.text() or ""
    assert "err-line\n" in text
    assert '{"n": 1}\n' in text


async def test_a_failing_commands_log_holds_what_it_wrote_before_it_failed() -> None:
    run = attempt()
    with pytest.raises(actions.ActionFailed, match="exit code 3"):
        await actions.run_command({"args": ["sh", "-c", "echo step one; exit 3"]}, run)
    assert run.log.text() == "step one\n"


async def test_a_python_tasks_prints_and_logging_go_to_its_log_not_its_output() -> None:
    run = attempt()
    output = await actions.run_python({"callable": "support.tasks:chatty", "kwargs": {}}, run)
    assert output == "done"
    text = run.log.text() or ""
    assert "printed line 0\nprinted line 1\n" in text
    assert "WARNING support.chatty: a warning from the task" in text


async def test_a_python_tasks_traceback_is_in_its_log() -> None:
    run = attempt()
    with pytest.raises(actions.ActionFailed, match="RuntimeError: kaboom"):
        await actions.run_python({"callable": "support.tasks:explode", "kwargs": {}}, run)
    text = run.log.text() or ""
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: kaboom" in text


async def test_concurrent_python_attempts_keep_their_own_logs() -> None:
    runs = [attempt() for _ in range(3)]
    spec = "support.tasks:chatty_async"
    await asyncio.gather(
        *(
            actions.run_python({"callable": spec, "kwargs": {"name": f"n{i}"}}, r)
            for i, r in enumerate(runs)
        )
    )
    for index, run in enumerate(runs):
        assert run.log.text() == f"hello from n{index}\nbye from n{index}\n"


async def test_what_the_worker_prints_and_logs_outside_attempts_stays_in_its_own_log(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    run = attempt()
    await actions.run_python({"callable": "support.tasks:chatty", "kwargs": {}}, run)
    capture.install()
    print("the worker's own line")
    sys.stdout.flush()
    with caplog.at_level(logging.INFO):
        logging.getLogger("treadle.worker").info("the worker's own record")
    assert "the worker's own line" in capsys.readouterr().out
    assert "the worker's own line" not in (run.log.text() or "")
    assert "the worker's own record" not in (run.log.text() or "")
