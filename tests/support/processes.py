"""Stopping the processes tests start: SIGTERM, then SIGKILL after a grace."""

from __future__ import annotations

import subprocess
from typing import Any


def stop(process: subprocess.Popen[Any], grace_seconds: float = 10) -> None:
    process.terminate()
    try:
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
