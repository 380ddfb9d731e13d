"""What the node agent's modules share: the JSON shape of objects, the pod IP, timestamps."""

from __future__ import annotations

import datetime
from typing import Any

POD_IP = "127.0.0.1"
"""A pod's IP where pods share the host's network (no pod network: hack/podnet.py)."""

Json = dict[str, Any]


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
