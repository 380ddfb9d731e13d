"""The Lua scripts' headers match their bodies, and the Python side calls them by name."""

from __future__ import annotations

import re

import pytest

from treadle.services import pool_users, scripts


def indices(kind: str, source: str) -> set[int]:
    return {int(index) for index in re.findall(rf"\b{kind}\[(\d+)\]", source)}


@pytest.mark.parametrize("script", scripts.SCRIPTS.values(), ids=lambda script: script.name)
def test_a_script_reads_exactly_the_keys_and_arguments_its_header_names(
    script: scripts.Script,
) -> None:
    assert script.keys, "a script names its KEYS"
    assert indices("KEYS", script.source) == set(range(1, len(script.keys) + 1))
    assert indices("ARGV", script.source) == set(range(1, len(script.args) + 1))


@pytest.mark.parametrize("script", scripts.SCRIPTS.values(), ids=lambda script: script.name)
def test_every_command_a_script_sends_is_one_a_pools_user_may_send(
    script: scripts.Script,
) -> None:
    """A worker runs these scripts as its pool's Redis user, which Redis checks call by call."""
    commands = {name.lower() for name in re.findall(r"redis\.call\('(\w+)'", script.source)}
    assert commands <= set(pool_users.WORKER_COMMANDS), commands - set(pool_users.WORKER_COMMANDS)


def test_scripts_that_need_the_clock_take_now_first() -> None:
    needing = [s for s in scripts.SCRIPTS.values() if "local now" in s.source]
    assert {s.name for s in needing} == {"breaker_admit", "breaker_record", "bucket_take"}
    assert all(s.args[0] == "now" for s in needing)


def test_a_call_with_a_name_missing_or_unknown_is_refused() -> None:
    finish = scripts.FINISH
    keys = {"tasks": "t", "done": "d", "results": "r"}
    args = dict.fromkeys(finish.args, "x")
    assert finish.ordered(keys, args) == (["t", "d", "r"], ["x"] * len(finish.args))
    with pytest.raises(TypeError, match="KEYS must be tasks, done, results"):
        finish.ordered({"tasks": "t", "done": "d"}, args)
    with pytest.raises(TypeError, match="ARGV must be"):
        finish.ordered(keys, {**args, "extra": "y"})


def test_the_results_scripts_publish_are_the_fields_a_result_encodes_to() -> None:
    """finish and reap take a TaskResult's encoding as their last three arguments."""
    from treadle.core.messages import TaskResult

    encoded = TaskResult("u", "ns/wf", "t", None, 1, "failed").encode()
    for script in (scripts.FINISH, scripts.REAP):
        assert script.args[-3:] == tuple(encoded)
