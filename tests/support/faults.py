"""The fault suite's instruments: workloads whose tasks write a side-effect log, a watch that
samples a workflow's progress, the counts each case reports, and ways to break things."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from support.cluster import CLUSTER, REPO, Cluster, state_dir
from support.redis_server import RedisServer

FULL = os.environ.get("TREADLE_FAULTS") == "full"
"""`make faults` runs every case at full size; `make test` runs the reduced version."""

REDELIVER_AFTER_SECONDS = 5


def scaled(full: int, reduced: int) -> int:
    return full if FULL else reduced


PYTHONPATH = {"name": "PYTHONPATH", "value": str(REPO / "tests")}


def worker_pool(name: str, **spec: Any) -> str:
    """A WorkerPool whose workers import the fault suite's tasks and redeliver quickly."""
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {"redeliverAfterSeconds": REDELIVER_AFTER_SECONDS, "env": [PYTHONPATH], **spec},
    }
    return json.dumps(body)


def fan_out(
    name: str, log: Path, tasks: int, seconds: float, pool: str | None = None, **spec: Any
) -> str:
    """A workflow of `tasks` forEach children of `support.tasks:record`, keyed by item, on two
    workers of its own or on the WorkerPool `pool`."""
    workers: dict[str, Any] = {
        "workers": {
            "replicas": 2,
            "redeliverAfterSeconds": REDELIVER_AFTER_SECONDS,
            "env": [PYTHONPATH],
        }
    }
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "concurrency": 500,
            "params": {"n": tasks},
            **({"workerPool": pool} if pool else workers),
            "tasks": [
                {
                    "name": "work",
                    "forEach": "{{ range(params.n) | list }}",
                    "python": {
                        "callable": "support.tasks:record",
                        "kwargs": {"log": str(log), "key": "{{ item }}", "seconds": seconds},
                    },
                }
            ],
            **spec,
        },
    }
    return json.dumps(body)


def job_fan_out(name: str, log: Path, tasks: int, seconds: float, concurrency: int) -> str:
    """A workflow of `tasks` forEach children that are `job` tasks: each child attempt a Job of
    its own running `support.tasks:record`, keyed by item."""
    program = (
        "import sys; from support.tasks import record; "
        "record(log=sys.argv[1], key=sys.argv[2], seconds=float(sys.argv[3]))"
    )
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "concurrency": concurrency,
            "params": {"n": tasks},
            "tasks": [
                {
                    "name": "work",
                    "forEach": "{{ range(params.n) | list }}",
                    "timeoutSeconds": 120,
                    "job": {
                        "image": "python:3.12-slim",
                        "command": ["python", "-c", program],
                        "args": [str(log), "{{ item }}", str(seconds)],
                        "env": [PYTHONPATH],
                    },
                }
            ],
        },
    }
    return json.dumps(body)


@dataclass
class Counts:
    """What one fault case reports."""

    case: str
    faults: int
    expected: int
    completed: int = 0
    lost: int = 0
    executions: int = 0
    re_run: int = 0
    """Keys started more than once: attempts cut short by the fault and run again."""
    finished_twice: int = 0
    """Keys whose task body ran to its end twice (the window between a task's end and its
    result's publication)."""
    duplicate_effects: int = 0
    """Keys whose idempotent effect was made twice: must be 0."""
    recovery_seconds: float = 0.0
    """The longest time from a fault to the next progress."""
    seconds: float = 0.0
    outcome: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicate_effects == 0

    def add_side_effects(self, log: Path, expected_keys: set[str]) -> None:
        started = _lines(Path(f"{log}.started"))
        finished = _lines(Path(f"{log}.finished"))
        effects = _lines(Path(f"{log}.effects"))
        self.executions = sum(started.values())
        self.re_run = sum(1 for n in started.values() if n > 1)
        self.finished_twice = sum(1 for n in finished.values() if n > 1)
        self.duplicate_effects = sum(1 for n in effects.values() if n > 1)
        made = {p.name for p in Path(f"{log}.keys").glob("*")}
        self.completed = len(expected_keys & made)
        self.lost = len(expected_keys - made)


def _lines(path: Path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


class Report:
    """Every case's counts, written as JSON where $TREADLE_FAULTS_REPORT says."""

    def __init__(self) -> None:
        self.cases: list[Counts] = []

    def add(self, counts: Counts) -> None:
        self.cases.append(counts)

    def write(self) -> None:
        target = os.environ.get("TREADLE_FAULTS_REPORT")
        if not target or not self.cases:
            return
        body = {
            "scale": "full" if FULL else "reduced",
            "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
            "cases": [{**asdict(c), "clean": c.clean} for c in self.cases],
        }
        Path(target).write_text(json.dumps(body, indent=2) + "\n")


class Progress:
    """Samples a workflow's progress twice a second in a thread, to tell how long after each
    fault the work moved on."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.samples: list[tuple[float, int, str]] = []
        self.faults: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            found = self.cluster.kubectl(
                "get",
                "twf",
                self.name,
                "-n",
                self.namespace,
                "-o",
                "jsonpath={.status.progress} {.status.phase}",
                check=False,
            )
            if found.returncode == 0 and "/" in found.stdout:
                progress, _, phase = found.stdout.partition(" ")
                done = int(progress.split("/")[0] or 0)
                self.samples.append((time.monotonic(), done, phase.strip()))
            self._stop.wait(0.5)

    @property
    def done(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    @property
    def phase(self) -> str:
        return self.samples[-1][2] if self.samples else ""

    def fault(self) -> None:
        self.faults.append(time.monotonic())

    def wait_for(self, phases: tuple[str, ...], timeout_seconds: float) -> str:
        deadline = time.monotonic() + timeout_seconds
        while self.phase not in phases:
            assert time.monotonic() < deadline, f"{self.name} never reached {phases}"
            time.sleep(0.2)
        return self.phase

    def wait_until_done(self, count: int, timeout_seconds: float = 120) -> None:
        deadline = time.monotonic() + timeout_seconds
        while self.done < count:
            assert time.monotonic() < deadline, f"{self.name} never reached {count} done"
            time.sleep(0.1)

    def stop(self) -> float:
        """Stops sampling; returns the longest time from a fault to the next progress."""
        self._stop.set()
        self._thread.join()
        longest = 0.0
        for moment in self.faults:
            before = [s for s in self.samples if s[0] <= moment]
            base = before[-1][1] if before else 0
            after = [s for s in self.samples if s[0] > moment and (s[1] > base or s[2] in FINAL)]
            end = after[0][0] if after else self.samples[-1][0]
            longest = max(longest, end - moment)
        return round(longest, 1)


FINAL = ("Succeeded", "Failed")


def worker_pids(pool: str) -> list[int]:
    """Worker processes of a pool, found as the local node agent runs them."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if f"--pool={pool}".encode() in argv and b"worker" in argv:
            found.append(int(cmdline.parent.name))
    return found


def restart_redis(server: RedisServer) -> None:
    """A clean restart of redis-server on the same port and data (its AOF is replayed)."""
    argv = server.process.args
    server.stop()
    server.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        cli = ["redis-cli", "-p", str(server.port), "-a", server.password, "--no-auth-warning"]
        answer = subprocess.run(
            [*cli, "ping"],
            capture_output=True,
            text=True,
            check=False,
        )
        if answer.stdout.strip() == "PONG":
            return
        time.sleep(0.1)
    raise AssertionError("redis-server did not come back in 20 s")


def kill_apiserver_and_restart() -> float:
    """SIGKILLs the local cluster's kube-apiserver and starts it again; returns how long it
    was away."""
    pid = int((state_dir() / "run" / "kube-apiserver.pid").read_text().partition("\n")[0])
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.05)
    env = {**os.environ, "TREADLE_STATE_DIR": str(state_dir())}
    subprocess.run([str(CLUSTER), "up"], check=True, env=env, capture_output=True)
    return time.monotonic() - started


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
