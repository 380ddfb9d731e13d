"""Treadle beside Argo Workflows, on the same local cluster, one after the other: N small
workflows (5 tasks, a -> b, c, d -> e) created at once, then one workflow fanning out to M
children. Every task runs the same command, `true`.

    .venv/bin/python bench/argo.py --workflows 1000 --children 10000 [--runs treadle,argo]
    .venv/bin/python bench/argo.py --scenarios job --job-workflows 20

The `job` scenario runs the small DAG with its middle step in a container of its own on both
sides: a `job` task on Treadle (a Job per attempt), a step on Argo (a pod per step, as all
are); seconds and API writes per step compare what a pod per step costs each.

Treadle runs its tasks on a warm WorkerPool of 2 workers (made and ready before the clock
starts) with the operator `make run` started. Argo is a benchmark-only peer, never a
dependency: `hack/tools.sh argo` builds its workflow-controller and argoexec from their Go
module (pinned in hack/tools/argo), this script installs its CRDs and the executor's Role in a
namespace of its own and runs the controller on this machine, namespaced, with its defaults
(20 API requests a second, burst 30, 32 workflow workers); the node agent runs each task's pod
(the emissary executor: an init container that copies argoexec, the main container under
`argoexec emissary`, and the `wait` sidecar) as processes, as it runs every pod. Argo's
workflows delete their pods as each completes (`podGC: OnPodCompletion`), as a busy cluster's
would; its fan-out is a DAG task `withItems` the M numbers with `parallelism` equal to
Treadle's `concurrency` (500).

For each system and scenario: seconds from the first create to the last workflow ended, tasks
a second, workflows that succeeded, the controller's peak RSS (the operator's; the
workflow-controller's), the API server's write requests per task (its own
`apiserver_request_total`), and, for the fan-out, the size of the finished Workflow object.
A run that does not end within `--timeout` seconds is recorded as such, with what ended.
Writes bench/results/argo-small-<N>.json and argo-fanout-<M>.json (both systems and the ratio
`argo_over_treadle_seconds`) and a .png of each; with `--argo-tuned`, Argo's controller runs
with more client QPS, burst and workers, as its scaling guide advises, and the files end
`-tuned`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    STATE,
    WORKFLOWS,
    Kind,
    apiserver_writes,
    create_with_requests,
    env,
    kubectl,
    namespace,
    operator_pid,
    peak_rss,
    save_plot,
    warm_pool,
    watch_ends,
    write,
)

ARGO = Kind("argoproj.io", "v1alpha1", "Workflow", "workflows", ("Succeeded", "Failed", "Error"))
DAG = (("a", ()), ("b", ("a",)), ("c", ("a",)), ("d", ("a",)), ("e", ("b", "c", "d")))
COMMAND = ["true"]
POOL_WORKERS = 2
CONCURRENCY = 500
CLIENTS = 32
SYSTEMS = ("treadle", "argo")
# Argo's scaling guide (docs/scaling.md): more client QPS and burst, more workflow and pod
# clean-up workers. `--argo-tuned` runs the controller with these instead of its defaults.
DEFAULTS = "controller defaults (qps 20, burst 30, 32 workflow workers)"
TUNED = ("--qps=200", "--burst=300", "--workflow-workers=64", "--pod-cleanup-workers=32")


# Treadle ------------------------------------------------------------------------------------


def treadle_small(index: int, pool: str) -> dict[str, Any]:
    tasks = [
        {"name": name, "command": {"args": COMMAND}, **({"dependsOn": [*after]} if after else {})}
        for name, after in DAG
    ]
    return {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": f"small-{index:04d}"},
        "spec": {"workerPool": pool, "tasks": tasks},
    }


JOB_STEP = "c"
"""In the `job` scenario, the step that runs in a container of its own on both systems."""


def treadle_job_dag(index: int, pool: str) -> dict[str, Any]:
    """The small DAG with its middle step `c` a `job` task: a pod of its own, as every one of
    Argo's steps is; the other four run on the pool's warm workers."""
    body = treadle_small(index, pool)
    body["metadata"]["name"] = f"job-{index:04d}"
    for task in body["spec"]["tasks"]:
        if task["name"] == JOB_STEP:
            del task["command"]
            task["job"] = {"image": "busybox", "command": COMMAND}
    return body


def treadle_fanout(children: int, pool: str) -> dict[str, Any]:
    return {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "fanout"},
        "spec": {
            "workerPool": pool,
            "concurrency": CONCURRENCY,
            "params": {"n": children},
            "tasks": [
                {
                    "name": "child",
                    "forEach": "{{ range(params.n) | list }}",
                    "command": {"args": COMMAND},
                }
            ],
        },
    }


# Argo ---------------------------------------------------------------------------------------


def argo_step() -> dict[str, Any]:
    # The node agent ignores images; the emissary executor needs the command spelled out.
    return {"name": "step", "container": {"image": "busybox", "command": COMMAND}}


def argo_small(index: int) -> dict[str, Any]:
    tasks = [
        {"name": name, "template": "step", **({"dependencies": list(after)} if after else {})}
        for name, after in DAG
    ]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": f"small-{index:04d}"},
        "spec": {
            "entrypoint": "main",
            "podGC": {"strategy": "OnPodCompletion"},
            "templates": [{"name": "main", "dag": {"tasks": tasks}}, argo_step()],
        },
    }


def argo_fanout(children: int) -> dict[str, Any]:
    child = {"name": "child", "template": "step", "withItems": list(range(children))}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "fanout"},
        "spec": {
            "entrypoint": "main",
            "parallelism": CONCURRENCY,
            "podGC": {"strategy": "OnPodCompletion"},
            "templates": [{"name": "main", "dag": {"tasks": [child]}}, argo_step()],
        },
    }


def argo_tools() -> Path:
    """Builds (or finds in the tool cache) Argo's binaries; their directory, with its CRDs and
    the executor's Role under manifests/."""
    out = subprocess.run(
        ["bash", str(ROOT / "hack" / "tools.sh"), "argo"], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"hack/tools.sh argo failed:\n{out.stderr}")
    return Path(out.stdout.strip().splitlines()[-1])


def check_room(tools: Path) -> None:
    """Each Argo pod's init container copies argoexec into the pod's emptyDir, and the node
    agent runs up to 110 pods at once: stop early rather than fill the disk."""
    needed = 110 * (tools / "argoexec").stat().st_size * 1.5
    free = shutil.disk_usage(STATE).free
    if free < needed:
        raise SystemExit(
            f"Argo's pods need {needed / 2**30:.0f} GiB free under {STATE}; "
            f"{free / 2**30:.0f} GiB are"
        )


def install_argo(tools: Path, space: str) -> None:
    manifests = tools / "manifests"
    for crd in sorted(manifests.glob("argoproj.io_*.yaml")):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    kubectl("wait", "--for=condition=Established", "crd/workflows.argoproj.io", "--timeout=60s")
    namespace(space)
    kubectl("apply", "-n", space, "-f", str(manifests / "executor-role.yaml"))
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "executor-default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "executor"},
        "subjects": [{"kind": "ServiceAccount", "name": "default"}],
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "workflow-controller-configmap"},
        # No metrics server (it would listen on every address, port 9090).
        "data": {"metricsConfig": "enabled: false\n"},
    }
    for body in (binding, config):
        kubectl("apply", "-n", space, "-f", "-", stdin=json.dumps(body))
    # The pods' init and wait containers run `argoexec`: the node agent finds programs on its
    # PATH, which has the project's environment.
    link = ROOT / ".venv" / "bin" / "argoexec"
    link.unlink(missing_ok=True)
    link.symlink_to(tools / "argoexec")


@contextlib.contextmanager
def argo_controller(tools: Path, space: str, extra: tuple[str, ...]) -> Iterator[int]:
    """Argo's workflow-controller on this machine, watching `space` only; yields its pid."""
    log = STATE / "logs" / "argo-workflow-controller.log"
    args = [
        str(tools / "workflow-controller"),
        f"--kubeconfig={STATE / 'kubeconfig'}",
        f"--namespace={space}",
        "--namespaced",
        f"--managed-namespace={space}",
        "--executor-image=argoexec:local",
        "--loglevel=warn",
        *extra,
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**env(), "LEADER_ELECTION_DISABLE": "true"},
        )
    try:
        time.sleep(3)
        if process.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise SystemExit("Argo's workflow-controller stopped:\n" + "\n".join(tail))
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


# Measuring ----------------------------------------------------------------------------------


def children_done(kind: Kind, space: str) -> int:
    """How many of the fan-out's children have ended, from its status (Argo's `progress` is
    "done/total")."""
    path = "{.status.progress}" if kind is ARGO else "{.status.tasks.child.succeeded}"
    out = kubectl("get", f"{kind.plural}.{kind.group}", "fanout", "-n", space, "-o",
                  f"jsonpath={path}", check=False)  # fmt: skip
    head = out.split("/")[0].strip()
    return int(head) if head.isdigit() else 0


def measure(
    kind: Kind, space: str, bodies: list[dict[str, Any]], pid: int, tasks: int, timeout: float
) -> tuple[dict[str, Any], list[tuple[float, int]]]:
    """Creates `bodies` in `space` and waits until each has ended (or `timeout`); the timeline
    counts tasks done (a small workflow's when it ends; the fan-out's children from its
    status)."""
    writes_before = apiserver_writes()
    stop, peak = peak_rss(pid)
    created: list[float] = []
    started = time.monotonic()
    creating = threading.Thread(
        target=create_with_requests, args=(kind, space, bodies, CLIENTS, created)
    )
    creating.start()
    ended = watch_ends(kind, space, len(bodies))
    timeline: list[tuple[float, int]] = []
    per_workflow = tasks // len(bodies)

    def done_so_far() -> int:
        if len(bodies) == 1 and not ended:
            return children_done(kind, space)
        return len(ended) * per_workflow

    while len(ended) < len(bodies) and time.monotonic() - started < timeout:
        timeline.append((time.monotonic() - started, done_so_far()))
        time.sleep(0.5)
    timeline.append((time.monotonic() - started, done_so_far()))
    creating.join()
    stop.set()
    done = len(ended) >= len(bodies)
    seconds = (max(ended.values()) if done else time.monotonic()) - started
    found = json.loads(kubectl("get", f"{kind.plural}.{kind.group}", "-n", space, "-o", "json"))
    phases = [(item.get("status") or {}).get("phase") for item in found["items"]]
    writes = apiserver_writes() - writes_before
    result: dict[str, Any] = {
        "ended": len(ended),
        "succeeded": phases.count("Succeeded"),
        "timed_out": not done,
        "seconds": round(seconds, 1),
        "tasks_per_second": round(tasks / seconds, 1) if done else None,
        "controller_peak_rss_mib": round(peak[0] / 2**20, 1),
        "apiserver_writes_per_task": round(writes / tasks, 2),
    }
    if len(bodies) == 1 and found["items"]:
        result["workflow_object_bytes"] = len(json.dumps(found["items"][0]))
    return result, timeline


def run_scenario(
    system: str,
    scenario: str,
    size: int,
    tools: Path | None,
    timeout: float,
    extra: tuple[str, ...] = (),
) -> tuple[dict[str, Any], list[tuple[float, int]]]:
    space = f"bench-{system}-{scenario}-{int(time.time())}"
    namespace(space)
    tasks = size if scenario == "fanout" else size * len(DAG)
    if system == "treadle":
        pool = warm_pool(space, POOL_WORKERS)
        if scenario == "small":
            bodies = [treadle_small(i, pool) for i in range(size)]
        elif scenario == "job":
            bodies = [treadle_job_dag(i, pool) for i in range(size)]
        else:
            bodies = [treadle_fanout(size, pool)]
        outcome = measure(WORKFLOWS, space, bodies, operator_pid(), tasks, timeout)
    else:
        assert tools is not None
        install_argo(tools, space)
        small = scenario in ("small", "job")
        bodies = [argo_small(i) for i in range(size)] if small else [argo_fanout(size)]
        with argo_controller(tools, space, extra) as pid:
            outcome = measure(ARGO, space, bodies, pid, tasks, timeout)
    # Gone before the next run starts: its deletion loads the API server.
    kubectl("delete", "namespace", space, "--wait=true", "--timeout=900s", check=False)
    return outcome


def compare(
    scenario: str,
    size: int,
    runs: dict[str, tuple[dict[str, Any], list[tuple[float, int]]]],
    extra: tuple[str, ...] = (),
) -> None:
    label = {
        "small": f"{size} workflows x {len(DAG)} tasks (a -> b, c, d -> e)",
        "job": f"{size} workflows x {len(DAG)} tasks (a -> b, c, d -> e), step {JOB_STEP} in a "
        "container of its own (Treadle: a job task; Argo: every step)",
        "fanout": f"one workflow, {size} children (concurrency/parallelism {CONCURRENCY})",
    }[scenario]
    result: dict[str, Any] = {
        "scenario": label,
        "command": " ".join(COMMAND),
        "treadle_runs_on": f"a warm WorkerPool of {POOL_WORKERS} workers",
        "argo_setup": "v" + argo_version() + ", emissary executor, a pod per task, podGC "
        "OnPodCompletion, "
        + (f"tuned as its scaling guide says ({' '.join(extra)})" if extra else DEFAULTS),
        **{system: outcome for system, (outcome, _) in runs.items()},
    }
    if set(runs) == set(SYSTEMS):
        treadle, argo = runs["treadle"][0], runs["argo"][0]
        result["argo_over_treadle_seconds"] = round(argo["seconds"] / treadle["seconds"], 1)
        if argo["timed_out"]:
            result["note"] = "Argo did not finish within the timeout: the ratio is a floor."
    png = write(f"argo-{scenario}-{size}" + ("-tuned" if extra else ""), result)

    def draw(axis: Any) -> None:
        for system, (_, timeline) in runs.items():
            axis.plot([t for t, _ in timeline], [n for _, n in timeline], label=system)
        axis.legend()

    save_plot(png, label, "seconds since the first create", "tasks done", draw)


def argo_version() -> str:
    for line in (ROOT / "hack" / "versions.env").read_text().splitlines():
        if line.startswith("ARGO_VERSION="):
            return line.split("=", 1)[1].lstrip("v")
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument(
        "--job-workflows", type=int, default=20, help="workflows of the `job` scenario"
    )
    parser.add_argument("--runs", default=",".join(SYSTEMS), help="treadle, argo or both")
    parser.add_argument(
        "--scenarios",
        default="small,fanout",
        help="small (N workflows), job (the small DAG with a container step), fanout",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a run may take")
    parser.add_argument(
        "--argo-tuned",
        action="store_true",
        help="run Argo's controller with " + " ".join(TUNED) + " (its scaling guide's advice)",
    )
    args = parser.parse_args()
    systems = [s for s in args.runs.split(",") if s]
    if unknown := set(systems) - set(SYSTEMS):
        parser.error(f"--runs: unknown {sorted(unknown)}")
    scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown := set(scenarios) - {"small", "job", "fanout"}:
        parser.error(f"--scenarios: unknown {sorted(unknown)}")
    tools = argo_tools() if "argo" in systems else None
    if tools is not None:
        check_room(tools)
    extra = TUNED if args.argo_tuned else ()
    for scenario in scenarios:
        size = {"small": args.workflows, "job": args.job_workflows}.get(scenario, args.children)
        runs = {s: run_scenario(s, scenario, size, tools, args.timeout, extra) for s in systems}
        compare(scenario, size, runs, extra)


if __name__ == "__main__":
    main()
