"""The operator as a subprocess against the local cluster, with its log kept for failures."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from support import processes
from support.cluster import REPO, Cluster, host_address
from support.redis_server import free_port, reach_from_pods

TREADLE = REPO / ".venv" / "bin" / "treadle"


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log: Path
    health_port: int
    metrics_port: int
    argv: list[str]
    env: dict[str, str]
    liveness_port: int = 0

    def option(self, flag: str) -> str:
        """The value it was started with for `flag` (`--name=value`)."""
        found = [a.split("=", 1)[1] for a in self.argv if a.startswith(f"{flag}=")]
        if not found:
            raise AssertionError(f"the operator was started without {flag}")
        return found[-1]

    def crash_and_restart(self, away_seconds: float = 0) -> None:
        """SIGKILL (no cleanup at all), then, `away_seconds` later, the same command again,
        healthy."""
        self.process.kill()
        self.process.wait()
        time.sleep(away_seconds)
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        _wait_healthy(self)

    def log_tail(self, characters: int = 8000) -> str:
        return self.log.read_text(errors="replace")[-characters:]

    def stop(self) -> None:
        processes.stop(self.process, grace_seconds=15)


WEBHOOK_CLIENT = "kube-apiserver-webhook-client"


def webhook_client_flags(cluster: Cluster) -> list[str]:
    """The webhook answers only the local API server's client certificate (its admission
    configuration presents it); a cluster without that PKI (kind) gets no check."""
    ca = cluster.kubeconfig.parent / "pki" / "ca.crt"
    if not (cluster.kubeconfig.parent / "pki" / f"{WEBHOOK_CLIENT}.crt").exists():
        return []
    return [f"--webhook-client-ca={ca}", f"--webhook-client-name={WEBHOOK_CLIENT}"]


def log_api_flags() -> list[str]:
    """The local API server reaches the log API at the cluster's host address (kind: none)."""
    address = host_address()
    return [f"--logs-address={address}:{free_port()}", "--logs-publish"] if address else []


def start(
    cluster: Cluster,
    log: Path,
    redis_url: str,
    *,
    webhook: bool = True,
    extra: Sequence[str] = (),
    leading: bool = True,
) -> OperatorProcess:
    """Starts an operator and waits until it serves: its health endpoint once it leads (kopf
    runs), or only its metrics when it may be a standby (`leading=False`)."""
    health, metrics, webhook_port, live = free_port(), free_port(), free_port(), free_port()
    argv = [
        str(TREADLE),
        "operator",
        "--verbose",
        f"--health-address=127.0.0.1:{health}",
        f"--liveness-address=127.0.0.1:{live}",
        f"--metrics-address=127.0.0.1:{metrics}",
        f"--webhook-address=127.0.0.1:{webhook_port}" if webhook else "--webhook-address=",
        *(webhook_client_flags(cluster) if webhook else []),
        *log_api_flags(),
        *extra,
    ]
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "TREADLE_REDIS_URL": redis_url}
    address = host_address()
    if redis_url and address and not any(a.startswith("--worker-redis-url") for a in extra):
        env["TREADLE_WORKER_REDIS_URL"] = reach_from_pods(redis_url, address)
    with log.open("ab") as handle:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, env=env
        )
    operator = OperatorProcess(process, log, health, metrics, argv, env, live)
    _wait_healthy(operator, "healthz" if leading else "metrics")
    return operator


def _wait_healthy(operator: OperatorProcess, endpoint: str = "healthz") -> None:
    process = operator.process
    port = operator.health_port if endpoint == "healthz" else operator.metrics_port
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the operator exited:\n{operator.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{endpoint}", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    operator.stop()
    raise RuntimeError(f"the operator was not healthy in 60 s:\n{operator.log_tail()}")
