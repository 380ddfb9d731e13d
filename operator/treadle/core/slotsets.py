"""Sets of cron slots, as status stores them: ranges of consecutive fire times, `a/b,c`.

A job that succeeds slot after slot needs one range, whatever its age: a range `a/b` holds every
fire time of the schedule from `a` to `b`, and a slot that follows `b` (or precedes `a`)
extends it.  At most `LIMIT` ranges are kept, the latest ones: a job with a hole in its record
every day keeps weeks of it.  Pure: the schedule is passed in.
"""

from __future__ import annotations

from datetime import datetime

from treadle.core import slots, timestamps

LIMIT = 50
"""Ranges kept (the latest): status stays small whatever the job's age."""

Range = tuple[datetime, datetime]


def decode(text: str | None) -> list[Range]:
    found: list[Range] = []
    for part in (text or "").split(","):
        if not part:
            continue
        first, _, last = part.partition("/")
        start = timestamps.parse(first)
        found.append((start, timestamps.parse(last) if last else start))
    return sorted(found)


def encode(ranges: list[Range]) -> str:
    return ",".join(
        timestamps.text(a) if a == b else f"{timestamps.text(a)}/{timestamps.text(b)}"
        for a, b in ranges
    )


def contains(text: str | None, slot: datetime) -> bool:
    return any(a <= slot <= b for a, b in decode(text))


def add(text: str | None, slot: datetime, schedule: slots.Schedule) -> str:
    """The set with `slot` in it, neighbouring ranges joined."""
    ranges = decode(text)
    if any(a <= slot <= b for a, b in ranges):
        return encode(ranges)
    ranges = sorted([*ranges, (slot, slot)])
    joined: list[Range] = []
    for a, b in ranges:
        if joined and schedule.next_after(joined[-1][1]) >= a:
            joined[-1] = (joined[-1][0], max(b, joined[-1][1]))
        else:
            joined.append((a, b))
    return encode(joined[-LIMIT:])
