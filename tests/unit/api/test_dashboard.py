"""The Grafana dashboard in docs/ only charts metrics Treadle exports."""

from __future__ import annotations

import json
import re

from prometheus_client import REGISTRY

import treadle.controllers.metrics
import treadle.runtime.listeners
import treadle.worker.metrics  # noqa: F401 (registers the worker's metrics)
from support.cluster import REPO

SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def test_every_metric_the_dashboard_charts_is_exported() -> None:
    dashboard = json.loads((REPO / "docs" / "grafana" / "treadle.json").read_text())
    exported = {sample.name for family in REGISTRY.collect() for sample in family.samples} | {
        family.name for family in REGISTRY.collect()
    }
    charted = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            charted |= set(re.findall(r"\btreadle_[a-z_]+", target["expr"]))
    assert charted
    missing = {
        name for name in charted
        if name not in exported and not any(name.removesuffix(s) in exported for s in SUFFIXES)
    }  # fmt: skip
    assert not missing, f"charted but not exported: {sorted(missing)}"
