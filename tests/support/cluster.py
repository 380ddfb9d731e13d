"""The local cluster for tests: started once per session (reused when already running)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "hack" / "cluster"
KUBECTL = REPO / ".venv" / "bin" / "kubectl"


def state_dir() -> Path:
    """The tests' own cluster, apart from `make run`'s, so that no other operator interferes."""
    return Path(os.environ.get("TREADLE_TEST_STATE_DIR", REPO / ".treadle" / "test")).resolve()


def host_address() -> str | None:
    """Where pods of the tests' local cluster reach this machine (hack/podnet.py), or None
    when its pods share the host's network."""
    path = state_dir() / "network.json"
    return str(json.loads(path.read_text())["hostIP"]) if path.exists() else None


def reachable_from_pods() -> str:
    """The address a test server on this machine listens on so that pods reach it."""
    return host_address() or "127.0.0.1"


def _env() -> dict[str, str]:
    return {**os.environ, "TREADLE_STATE_DIR": str(state_dir())}


def is_running() -> bool:
    return subprocess.run([CLUSTER, "status"], capture_output=True, env=_env()).returncode == 0


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path

    @property
    def logs(self) -> Path:
        return state_dir() / "logs"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Runs kubectl against the cluster; with check, a failure shows kubectl's stderr."""
        result = subprocess.run(
            [str(KUBECTL), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def plugin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs `kubectl treadle ...` as a user would: kubectl finds the plugin on PATH (kubectl
        refuses flags before a plugin's name, so the kubeconfig comes from the environment)."""
        result = subprocess.run(
            [str(KUBECTL), "treadle", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=self.plugin_env(),
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl treadle {' '.join(args)} failed:\n{result.stderr}")
        return result

    def plugin_process(self, *args: str) -> subprocess.Popen[str]:
        """`kubectl treadle ...` left running (its stdout piped): `logs -f`, `ui`."""
        return subprocess.Popen(
            [str(KUBECTL), "treadle", *args],
            stdout=subprocess.PIPE,
            text=True,
            env=self.plugin_env(),
        )

    def plugin_env(self) -> dict[str, str]:
        """The environment kubectl finds the plugin and this cluster's kubeconfig in."""
        path = f"{KUBECTL.parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "PATH": path, "KUBECONFIG": str(self.kubeconfig)}

    def pki(self, name: str) -> Path:
        """A file of the local cluster's PKI (certificates and keys)."""
        return self.kubeconfig.parent / "pki" / name

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Events about the object `name`, oldest first."""
        listing = self.kubectl(
            "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
            "-o", "json",
        ).stdout  # fmt: skip
        items = json.loads(listing)["items"]
        return sorted(
            items, key=lambda e: (e["metadata"]["creationTimestamp"], e["metadata"]["name"])
        )

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
        return dict(json.loads(out))

    def wait(self, what: str, namespace: str, condition: str, timeout_seconds: int = 60) -> None:
        """Blocks on the API server's watch until `condition` (kubectl wait's --for) holds."""
        result = self.kubectl(
            "wait",
            what,
            "-n",
            namespace,
            f"--for={condition}",
            f"--timeout={timeout_seconds}s",
            check=False,
            timeout=timeout_seconds + 30,
        )
        if result.returncode != 0:
            state = self.kubectl("get", what, "-n", namespace, "-o", "yaml", check=False).stdout
            raise AssertionError(f"{what} never reached {condition}: {result.stderr}\n{state}")


def start() -> tuple[Cluster, bool]:
    """The running cluster, starting it when needed; the flag says whether this call started it."""
    started = not is_running()
    subprocess.run([CLUSTER, "up"], check=True, env=_env())
    return Cluster(state_dir() / "kubeconfig"), started


def stop() -> None:
    subprocess.run([CLUSTER, "down"], check=True, env=_env())


def docker_engine_missing() -> str | None:
    """Why no Docker engine can run kind here, or None when one answers."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command on PATH"
    answer = subprocess.run([docker, "info"], capture_output=True, text=True, check=False)
    if answer.returncode != 0:
        return f"`docker info` failed: {answer.stderr.strip()[:200]}"
    return None
