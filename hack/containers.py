"""One container's state as the agent reports it, and the rules for restarting it."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from agentcommon import Json


@dataclass
class ContainerState:
    """What the agent knows of one container; rendered into status.containerStatuses."""

    spec: Json
    restart_count: int = 0
    state: Json = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Json = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    process: asyncio.subprocess.Process | None = None
    exit_code: int | None = None
    done: bool = False  # terminated and will not be restarted

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def render(self, pod_uid: str) -> Json:
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": f"treadle://{pod_uid}/{self.name}/{self.restart_count}",
            "restartCount": self.restart_count,
            "ready": self.ready,
            "started": self.started,
            "state": self.state,
            "lastState": self.last_state,
        }


CONTAINER_MARKER = "TREADLE_LOCAL_CONTAINER"


def kill_marked(marker: str) -> int:
    """SIGKILLs every process whose environment carries `marker`; returns how many."""
    needle = f"{CONTAINER_MARKER}={marker}".encode()
    killed = 0
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                os.kill(int(environ.parent.name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return killed


def restart_wanted(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def backoff_seconds(restart_count: int, base: float, cap: float) -> float:
    return float(min(cap, base * (2 ** max(0, restart_count - 1))))
