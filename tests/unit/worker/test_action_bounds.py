"""Task outputs are bounded while they are read, whatever the action (SPEC, Limits: one task's
output is at most 1 MiB; larger: the attempt fails with `output too large`)."""

from __future__ import annotations

import pytest

from treadle.worker import runners as actions


def attempt(timeout_seconds: float) -> actions.Attempt:
    def no_session() -> None:
        raise AssertionError("no http here")

    return actions.Attempt(timeout_seconds, "uid/t/-", no_session)  # type: ignore[arg-type]


async def test_a_python_task_returning_more_than_the_bound_fails() -> None:
    with pytest.raises(actions.OutputTooLarge, match="more than 1048576 bytes"):
        await actions.run_python({"callable": "support.tasks:big_output", "kwargs": {}}, attempt(5))


async def test_a_command_printing_more_than_the_bound_is_stopped() -> None:
    with pytest.raises(actions.OutputTooLarge):
        await actions.run_command({"args": ["sh", "-c", "head -c 2000000 /dev/zero"]}, attempt(10))


async def test_a_command_within_the_bound_gives_its_output() -> None:
    run = actions.run_command({"args": ["sh", "-c", "echo '{\"n\": 1}'"]}, attempt(10))
    assert await run == {"n": 1}
