"""What `kubectl treadle sync backfill` makes of --from and --to."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from treadle.plugin import syncjobs
from treadle.plugin.output import Failure


def test_times_without_a_zone_are_read_in_the_jobs_time_zone() -> None:
    assert syncjobs.moment("2026-11-01T00:00", None) == datetime(2026, 11, 1, tzinfo=UTC)
    assert syncjobs.moment("2026-11-01", "Europe/Berlin") == datetime(
        2026, 10, 31, 23, tzinfo=UTC
    )  # midnight in Berlin, CET
    assert syncjobs.moment("2026-07-01T02:00:00+02:00", "Asia/Tokyo") == datetime(
        2026, 7, 1, tzinfo=UTC
    )  # a zone given wins
    with pytest.raises(Failure, match="not a time: 'yesterday'"):
        syncjobs.moment("yesterday", None)
