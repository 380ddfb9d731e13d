"""What the plugin prints: aligned tables like kubectl's, JSON for scripts, and failures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


class Failure(Exception):
    """A problem to report to the user in one line (exit code 1)."""


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str, namespaced: bool
) -> None:
    """The rows as a table (led by a NAMESPACE column when `namespaced`), or `empty`."""
    if not rows:
        print(empty)
        return
    print(table(["NAMESPACE", *headers] if namespaced else headers, rows))


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
