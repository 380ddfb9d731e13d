"""Prometheus metrics of the operator process (names in base units, `treadle_` prefix)."""

from prometheus_client import Counter, Info

import treadle

BUILD = Info("treadle_build", "Version of the running Treadle build.")
BUILD.info({"version": treadle.__version__})

ADMISSIONS = Counter(
    "treadle_admissions_total",
    "Resources admitted by the operator, by kind and resulting phase.",
    ["kind", "phase"],
)
