"""The fault suite: every case counts what its faults cost (support/faults.py); the counts of a
`make faults` run are written to bench/results/faults.json."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.faults import Report


@pytest.fixture(scope="session")
def report() -> Iterator[Report]:
    found = Report()
    yield found
    found.write()
