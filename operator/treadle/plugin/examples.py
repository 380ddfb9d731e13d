"""`kubectl treadle example [NAME]`: the numbered examples shipped in the package, listed or
printed, so that `kubectl treadle example hello | kubectl apply -f -` works from any install.

The wheel carries `examples/` as `treadle/examples/`; a checkout (an editable install) reads
the repository's `examples/` directly.
"""

from __future__ import annotations

import argparse
import re
from importlib import resources
from pathlib import Path
from typing import Any

from lightkube import Client

from treadle.plugin import flags
from treadle.plugin.output import Failure, table

NUMBERED = re.compile(r"^(\d\d)-(.+)\.yaml$")


def add_commands(commands: Any) -> None:
    example = flags.command_parser(
        commands,
        "example",
        help="list the shipped examples, or print one (pipe it to kubectl apply -f -)",
    )
    example.add_argument("name", nargs="?", help="e.g. hello, 01 or 01-hello")
    example.set_defaults(handler=show_example, offline=True)


def folder() -> Path:
    shipped = Path(str(resources.files("treadle"))) / "examples"
    if shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parents[3] / "examples"  # a checkout


def examples(where: Path | None = None) -> dict[str, Path]:
    """The examples by short name (`hello` for `01-hello.yaml`), in their order."""
    found = sorted((where or folder()).glob("[0-9][0-9]-*.yaml"))
    return {match[2]: path for path in found if (match := NUMBERED.match(path.name))}


def summary(path: Path, width: int = 90) -> str:
    """The first sentence of the example's opening comment, cut to `width`."""
    said = []
    for line in path.read_text().splitlines():
        if not line.startswith("#") or line.startswith("#   "):
            break  # the comment ended, or a command to run begins
        if not line.startswith("# expect:"):
            said.append(line.lstrip("# ").strip())
    text = " ".join(said)
    sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0].rstrip(":")
    return sentence if len(sentence) <= width else sentence[: width - 1].rstrip() + "…"


def find(name: str, where: Path | None = None) -> Path:
    known = examples(where)
    for short, path in known.items():
        if name in (short, path.stem, path.name, path.name[:2]):
            return path
    raise Failure(f"no example {name!r} (examples: {', '.join(known)})")


def show_example(client: Client | None, args: argparse.Namespace) -> int:
    if args.name:
        print(find(args.name).read_text(), end="")
        return 0
    rows = [[short, path.name, summary(path)] for short, path in examples().items()]
    print(table(["NAME", "FILE", "WHAT IT SHOWS"], rows))
    print("\nkubectl treadle example NAME | kubectl apply -f -")
    return 0
