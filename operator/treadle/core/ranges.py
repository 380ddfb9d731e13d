"""Compact sets of forEach item indices, as status stores them: "0-79,81,90-99".

A 10,000-child fan-out that finishes roughly in order needs a few bytes, not an entry per child.
"""

from __future__ import annotations

from collections.abc import Iterable


def encode(items: Iterable[int]) -> str:
    ordered = sorted(set(items))
    if not ordered:
        return ""
    parts: list[str] = []
    start = previous = ordered[0]
    for item in ordered[1:]:
        if item == previous + 1:
            previous = item
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = item
    parts.append(str(start) if start == previous else f"{start}-{previous}")
    return ",".join(parts)


def decode(text: str | None) -> set[int]:
    items: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        items.update(range(int(low), int(high or low) + 1))
    return items


def encode_map(values: dict[int, object]) -> dict[str, str]:
    """Index → value, grouped by value: {"2": "0-79,81"} (index ranges per value), so 10,000
    children retried at once take a few bytes, not an entry each."""
    grouped: dict[str, list[int]] = {}
    for index, value in values.items():
        grouped.setdefault(str(value), []).append(index)
    return {value: encode(indices) for value, indices in sorted(grouped.items())}


def decode_map(grouped: dict[str, str] | None) -> dict[int, str]:
    """The inverse of encode_map (values come back as the strings they were stored as)."""
    found: dict[int, str] = {}
    for value, text in (grouped or {}).items():
        for index in decode(text):
            found[index] = value
    return found
