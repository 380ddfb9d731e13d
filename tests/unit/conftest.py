"""Unit tests of the engine test its decisions, not the machine's speed: the engine's
per-call rendering budget (CPU time of the thread) is taken out of play unless a test sets a
clock of its own."""

from __future__ import annotations

import pytest

from treadle.core import scheduling


@pytest.fixture(autouse=True)
def _renders_never_out_of_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduling.Run, "render_clock", staticmethod(lambda: 0.0))
