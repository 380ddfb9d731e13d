"""The operator as a subprocess against the local cluster, with its log kept for failures."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from support.cluster import REPO, Cluster
from support.redis_server import free_port

TREADLE = REPO / ".venv" / "bin" / "treadle"


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log: Path
    health_port: int
    metrics_port: int

    def log_tail(self, characters: int = 8000) -> str:
        return self.log.read_text(errors="replace")[-characters:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(cluster: Cluster, log: Path, redis_url: str, *, webhook: bool = True) -> OperatorProcess:
    health, metrics, webhook_port = free_port(), free_port(), free_port()
    handle = log.open("ab")
    process = subprocess.Popen(
        [
            str(TREADLE),
            "operator",
            "--verbose",
            f"--health-address=127.0.0.1:{health}",
            f"--metrics-address=127.0.0.1:{metrics}",
            f"--webhook-address=127.0.0.1:{webhook_port}" if webhook else "--webhook-address=",
        ],
        stdin=subprocess.DEVNULL,
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "TREADLE_REDIS_URL": redis_url},
    )
    handle.close()
    operator = OperatorProcess(process, log, health, metrics)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the operator exited:\n{operator.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=1) as reply:
                if reply.status == 200:
                    return operator
        except OSError:
            time.sleep(0.1)
    operator.stop()
    raise RuntimeError(f"the operator was not healthy in 60 s:\n{operator.log_tail()}")
