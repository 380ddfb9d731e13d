"""Throughput: N no-op tasks with their results recorded, 2 worker processes, one local Redis,
in one run: Treadle (a forEach workflow, operator included, end to end) vs Celery (Redis broker
and result backend) vs Dramatiq (Redis broker, results middleware).

    make run                                   # cluster, Redis, operator
    .venv/bin/python bench/throughput.py --tasks 10000 --workers 2

Prints a table and writes bench/results/throughput-<tasks>.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
RESULTS = ROOT / "bench" / "results"


def redis_url(state: Path) -> str:
    """The Redis `make run` started (the same one Treadle's operator uses), database 3."""
    for line in (state / "redis" / "redis.env").read_text().splitlines():
        if line.startswith("TREADLE_REDIS_URL="):
            return line.split("=", 1)[1].strip().strip("'\"").rsplit("/", 1)[0] + "/3"
    raise SystemExit("no TREADLE_REDIS_URL in .treadle/redis/redis.env: run `make run` first")


def workers(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, cwd=ROOT / "bench", env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def timed(run: Callable[[], None]) -> float:
    started = time.monotonic()
    run()
    return time.monotonic() - started


def run_celery(tasks: int, processes: int, env: dict[str, str]) -> float:
    sys.path.insert(0, str(ROOT / "bench"))
    import competitors
    from celery.result import ResultSet

    competitors.celery_app.control.purge()
    pool = workers(
        [str(BIN / "celery"), "-A", "competitors", "worker", "--pool=prefork",
         f"--concurrency={processes}", "-Q", "bench", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--loglevel=WARNING"],
        env,
    )  # fmt: skip
    try:
        # Warm: the workers are up and took one task each before the clock starts.
        competitors.celery_noop.delay(-1).get(timeout=60)

        def run() -> None:
            results = ResultSet([competitors.celery_noop.delay(i) for i in range(tasks)])
            values = results.join_native(timeout=600)
            assert sorted(values) == list(range(tasks))

        return timed(run)
    finally:
        stop(pool)


def run_dramatiq(tasks: int, processes: int, env: dict[str, str]) -> float:
    sys.path.insert(0, str(ROOT / "bench"))
    import competitors

    competitors.broker.flush_all()
    pool = workers(
        [str(BIN / "dramatiq"), "competitors", f"--processes={processes}", "--threads=8",
         "--queues=bench"],
        env,
    )  # fmt: skip
    try:
        competitors.dramatiq_noop.send(-1).get_result(block=True, timeout=60_000)

        def run() -> None:
            messages = [competitors.dramatiq_noop.send(i) for i in range(tasks)]
            values = [m.get_result(block=True, timeout=600_000) for m in messages]
            assert sorted(values) == list(range(tasks))

        return timed(run)
    finally:
        stop(pool)


def run_treadle(tasks: int, processes: int) -> float:
    fanout = subprocess.run(
        [str(BIN / "python"), str(ROOT / "bench" / "fanout.py"), "--children", str(tasks),
         "--workers", str(processes), "--concurrency", "500", "--pool"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(fanout.stdout)
    assert result["phase"] == "Succeeded", result
    return float(result["seconds"])


def plot(result: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = result["tasks_per_second"]
    assert isinstance(rates, dict)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.bar(list(rates), list(rates.values()), color=["#2b8a3e", "#5c7cfa", "#f08c00"])
    axis.set_ylabel("tasks / s (results recorded)")
    axis.set_title(f"{result['tasks']:,} no-op tasks, {result['workers']} worker processes")
    for index, value in enumerate(rates.values()):
        axis.annotate(f"{value:,.0f}", (index, value), ha="center", va="bottom")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--state", type=Path, default=ROOT / ".treadle")
    args = parser.parse_args()
    env = {
        **os.environ,
        "BENCH_REDIS_URL": redis_url(args.state),
        "PYTHONPATH": str(ROOT / "bench"),
    }
    os.environ["BENCH_REDIS_URL"] = env["BENCH_REDIS_URL"]
    seconds = {
        "treadle": run_treadle(args.tasks, args.workers),
        "celery": run_celery(args.tasks, args.workers, env),
        "dramatiq": run_dramatiq(args.tasks, args.workers, env),
    }
    rates = {name: round(args.tasks / value, 1) for name, value in seconds.items()}
    result = {
        "tasks": args.tasks,
        "workers": args.workers,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "tasks_per_second": rates,
        "treadle_ratio": {
            k: round(rates["treadle"] / v, 2) for k, v in rates.items() if k != "treadle"
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "note": "Treadle end to end: kubectl apply to phase Succeeded as kubectl get sees it "
        "(polled each second), on a warm WorkerPool of as many worker pods (ready before the "
        "clock starts), every result applied to the workflow's status; Celery and Dramatiq from "
        "the first enqueue to the last result read, workers already warm.",
    }
    print(f"{'queue':<10} {'seconds':>9} {'tasks/s':>9}")
    for name in seconds:
        print(f"{name:<10} {seconds[name]:>9.1f} {rates[name]:>9.0f}")
    print("treadle / others:", result["treadle_ratio"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"throughput-{args.tasks}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, stem.with_suffix(".png"))


if __name__ == "__main__":
    main()
