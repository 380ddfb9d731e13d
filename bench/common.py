"""What the benchmark scripts share: kubectl against the cluster `make run` started, the
operator's process, the API server's request counters, percentiles, and writing results."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("TREADLE_STATE_DIR", ROOT / ".treadle"))
KUBECTL = str(ROOT / ".venv" / "bin" / "kubectl")
RESULTS = ROOT / "bench" / "results"
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")


def env() -> dict[str, str]:
    return {"KUBECONFIG": str(STATE / "kubeconfig"), **os.environ}


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    return subprocess.run(
        [KUBECTL, *args], input=stdin, capture_output=True, text=True, check=check, env=env()
    ).stdout


def namespace(name: str) -> None:
    subprocess.run([KUBECTL, "create", "namespace", name], capture_output=True, env=env())


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {memory} GiB, "
        f"Python {platform.python_version()}"
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def commit() -> str:
    """The commit measured (`+changes` when the tree differs from it)."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, cwd=ROOT,
    ).stdout.strip()  # fmt: skip
    return f"{head}+changes" if changed else head


def write(stem: str, result: dict[str, Any]) -> Path:
    import datetime

    today = datetime.date.today().isoformat()
    result = {**result, "machine": machine(), "date": today, "commit": commit()}
    print(json.dumps(result, indent=2))
    out = RESULTS / f"{stem}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out.with_suffix(".png")


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def operator_pid() -> int:
    """The operator `make run` started (hack/run.sh writes its pid)."""
    return int((STATE / "run" / "operator.pid").read_text().split()[0])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def apiserver_writes(resource_pattern: str = ".*") -> int:
    """Write requests the API server has served since it started (its own metrics)."""
    text = kubectl("get", "--raw", "/metrics")
    total = 0
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        verb = labels.get("verb", "")
        if (verb in WRITE_VERBS or verb == "APPLY") and re.fullmatch(
            resource_pattern, labels.get("resource", "")
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def save_plot(png: Any, title: str, xlabel: str, ylabel: str, draw: Any) -> None:
    """One small figure: `draw(axis)` puts the data on it; without matplotlib (the `bench`
    extra, which `make bench` installs) it says so and the JSON stands alone."""
    try:
        plt = pyplot()
    except ImportError:
        print(f"no plot {png}: matplotlib is missing (pip install -e '.[bench]')")
        return
    figure, axis = plt.subplots(figsize=(6, 3.5))
    draw(axis)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(png, dpi=120)


def warm_pool(space: str, replicas: int, slots: int = 16, name: str = "bench") -> str:
    """A WorkerPool of `replicas` workers in `space`, made and waited for until every worker is
    ready (its size fixed, so the clock of what runs on it includes no pod start)."""
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {
            "autoscaling": False,
            "replicas": {"min": replicas, "max": replicas},
            "slotsPerWorker": slots,
        },
    }
    namespace(space)
    kubectl("apply", "-n", space, "-f", "-", stdin=json.dumps(body))
    kubectl("wait", "-n", space, f"twp/{name}", "--for=condition=Ready", "--timeout=180s")
    return name


@dataclass(frozen=True)
class Kind:
    """A custom resource the benchmarks create and watch, and the phases that end one."""

    group: str
    version: str
    kind: str
    plural: str
    final: tuple[str, ...] = ("Succeeded", "Failed")

    def resource(self) -> Any:
        from lightkube.generic_resource import create_namespaced_resource

        return create_namespaced_resource(self.group, self.version, self.kind, self.plural)


WORKFLOWS = Kind("treadle.dev", "v1alpha1", "Workflow", "workflows")


def create_with_requests(
    kind: Kind, space: str, bodies: list[dict[str, Any]], in_flight: int, created: list[float]
) -> None:
    """Creates the objects through the API, `in_flight` requests at once, noting when each
    was made."""
    from lightkube import AsyncClient, KubeConfig

    resource = kind.resource()

    async def run() -> None:
        api = AsyncClient(config=KubeConfig.from_file(STATE / "kubeconfig").get())
        slots = asyncio.Semaphore(in_flight)

        async def one(body: dict[str, Any]) -> None:
            async with slots:
                await api.create(resource(body), namespace=space)
                created.append(time.monotonic())

        try:
            await asyncio.gather(*(one(body) for body in bodies))
        finally:
            await api.close()

    asyncio.run(run())


def watch_ends(kind: Kind, space: str, count: int) -> dict[str, float]:
    """When each object of `space` reached a final phase, as one watch sees it (filled by a
    thread; a watch costs the API server far less than listing a thousand objects a second)."""
    from lightkube import Client, KubeConfig

    resource = kind.resource()
    ended: dict[str, float] = {}

    def follow() -> None:
        api = Client(config=KubeConfig.from_file(STATE / "kubeconfig").get())
        while len(ended) < count:
            for _, found in api.watch(resource, namespace=space, server_timeout=60):
                phase = (found.get("status") or {}).get("phase")
                name = found["metadata"]["name"]
                if phase in kind.final and name not in ended:
                    ended[name] = time.monotonic()
                if len(ended) >= count:
                    return

    threading.Thread(target=follow, daemon=True).start()
    return ended


def peak_rss(pid: int) -> tuple[threading.Event, list[int]]:
    """Samples a process's resident memory twice a second until the event is set; the list
    holds the peak so far."""
    stop, peak = threading.Event(), [rss_bytes(pid)]

    def sample() -> None:
        while not stop.wait(0.5):
            try:
                peak[0] = max(peak[0], rss_bytes(pid))
            except OSError:  # it ended
                return

    threading.Thread(target=sample, daemon=True).start()
    return stop, peak
