"""Every `kubectl treadle` command says what it does and shows examples in its --help (#32:
most had neither), and the examples name only flags the command has."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator

import pytest

from treadle.plugin import main, usage


def leaves(
    parser: argparse.ArgumentParser, path: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        yield path, parser
        return
    for name, child in actions[0].choices.items():
        yield from leaves(child, f"{path} {name}".strip())


COMMANDS = dict(leaves(main.parser()))


def test_every_command_has_examples_and_only_commands_have_them() -> None:
    assert set(COMMANDS) == set(usage.EXAMPLES)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_a_commands_help_says_what_it_does_and_how(path: str) -> None:
    shown = COMMANDS[path].format_help()
    assert COMMANDS[path].description
    assert "examples:\n  kubectl treadle " + path in shown


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_a_commands_examples_parse(path: str) -> None:
    lines = usage.EXAMPLES[path].replace("\\\n", "").splitlines()
    for line in lines:
        words = shlex.split(line.split(" # ")[0].split("|")[0])
        assert words[:2] == ["kubectl", "treadle"]
        main.parser().parse_args(words[2:])  # SystemExit (and a message) when it does not
