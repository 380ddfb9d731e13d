"""Command-line flags shared by every `kubectl treadle` command."""

from __future__ import annotations

import argparse
from typing import Any

from treadle.plugin import usage


def add_connection_flags(parser: argparse.ArgumentParser, default: object) -> None:
    """Flags that go before or after the command, as with kubectl (`-n ns` anywhere)."""
    parser.add_argument(
        "--kubeconfig", default=default, help="path of the kubeconfig (default: $KUBECONFIG)"
    )
    parser.add_argument("--context", default=default, help="kubeconfig context to use")
    parser.add_argument(
        "-n", "--namespace", default=default, help="namespace (default: the context's)"
    )


ROOT = "kubectl treadle"


def command_parser(commands: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A leaf command that also takes the connection flags; its help says what it does (its
    `help`) and ends with examples (`usage.EXAMPLES`)."""
    kwargs.setdefault("description", kwargs.get("help"))
    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    leaf: argparse.ArgumentParser = commands.add_parser(name, **kwargs)
    leaf.epilog = usage.epilog(leaf.prog.removeprefix(ROOT).strip())
    add_connection_flags(leaf, default=argparse.SUPPRESS)
    return leaf
