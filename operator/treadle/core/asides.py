"""Telling a workflow that its pool's result stream had entries that were no result of its own
(junk or forgeries its tasks wrote): a Warning Event at most once a minute a pool, counting
what came meanwhile, so a task writing junk in a loop makes no flood of Events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from treadle.core.notices import Notice

EVENT_INTERVAL = timedelta(seconds=60)


@dataclass
class AsideNotices:
    told_at: dict[str, datetime] = field(default_factory=dict)
    untold: dict[str, int] = field(default_factory=dict)

    def record(
        self, pool: str, reasons: Sequence[str], now: datetime, *, stream: str
    ) -> Notice | None:
        """The Event for these set-aside entries of `pool`, or None when one was told less
        than EVENT_INTERVAL ago (they are counted into the next)."""
        self.untold[pool] = self.untold.get(pool, 0) + len(reasons)
        told = self.told_at.get(pool)
        if told is not None and now - told < EVENT_INTERVAL:
            return None
        count = self.untold.pop(pool)
        self.told_at[pool] = now
        return Notice(
            "Warning",
            "ResultSetAside",
            f"{count} entries of this workflow's result stream were no result of its own and "
            f"were set aside in {stream} (the first: {reasons[0]}); a task of this workflow "
            "may be writing to Redis",
        )

    def forget(self, pool: str) -> None:
        self.told_at.pop(pool, None)
        self.untold.pop(pool, None)
