"""Cron slots: which fire time a moment belongs to, the interval around it, and the pace of
retries inside it.  Pure; the caller passes the clock.

- The *slot* of a moment is the latest fire time at or before it; the *interval* is the gap
  from that fire time to the next one (so irregular schedules such as `0 9,17 * * *` get the
  interval of the slot they are in).
- Schedules are five cron fields (minute hour day-of-month month day-of-week), or six with a
  seconds field first; they are read in the job's time zone (IANA name, default UTC).
- Daylight-saving days follow Debian cron, as Kubernetes users know it: a job at a fixed local
  time that does not exist that day (02:30 when clocks jump from 02:00 to 03:00) fires at the
  first minute that exists after it (03:00); a local time that happens twice (02:30 when clocks
  fall back) fires once, at its first occurrence.  Jobs with `*` in the minute or hour field
  follow real elapsed time.
- Every moment returned is in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import cronsim


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be read."""


@dataclass(frozen=True)
class Slot:
    start: datetime
    """The fire time that opened the slot."""
    end: datetime
    """The next fire time, which opens the next slot."""

    @property
    def interval_seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class Schedule:
    expression: str
    time_zone: str | None = None

    def __post_init__(self) -> None:
        try:
            self._zone()
            cronsim.CronSim(self.expression, datetime.now(UTC))
        except cronsim.CronSimError as error:
            raise ScheduleError(f"{error} in {self.expression!r}") from None
        except (KeyError, ValueError) as error:
            raise ScheduleError(f"unknown time zone {self.time_zone!r}: {error}") from None

    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone or "UTC")

    def _local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            raise ValueError("slots need an aware datetime")
        return moment.astimezone(self._zone())

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment`."""
        fire = next(cronsim.CronSim(self.expression, self._local(moment)))
        return fire.astimezone(UTC)

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        """The latest fire time at or before `moment` (None when there is none in 50 years)."""
        local = self._local(moment).replace(microsecond=0) + timedelta(seconds=1)
        try:
            fire = next(cronsim.CronSim(self.expression, local, reverse=True))
        except StopIteration:
            return None
        return fire.astimezone(UTC)

    def slot_at(self, moment: datetime) -> Slot | None:
        """The slot `moment` is in; None before the schedule's first fire time."""
        start = self.last_at_or_before(moment)
        if start is None:
            return None
        return Slot(start, self.next_after(start))


def skipped_retry_seconds(
    interval_seconds: float, *, ratio: float, min_seconds: float, max_seconds: float
) -> float:
    """The wait between attempts of a skipped run: clamp(ratio × interval, min, max)."""
    return min(max_seconds, max(min_seconds, ratio * interval_seconds))
