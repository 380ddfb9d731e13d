"""Command-line flags shared by every `kubectl treadle` command."""

from __future__ import annotations

import argparse
from typing import Any


def add_connection_flags(parser: argparse.ArgumentParser, default: object) -> None:
    """Flags that go before or after the command, as with kubectl (`-n ns` anywhere)."""
    parser.add_argument(
        "--kubeconfig", default=default, help="path of the kubeconfig (default: $KUBECONFIG)"
    )
    parser.add_argument("--context", default=default, help="kubeconfig context to use")
    parser.add_argument(
        "-n", "--namespace", default=default, help="namespace (default: the context's)"
    )


def command_parser(commands: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A leaf command that also takes the connection flags."""
    leaf: argparse.ArgumentParser = commands.add_parser(name, **kwargs)
    add_connection_flags(leaf, default=argparse.SUPPRESS)
    return leaf
