"""Fault injection with counts: each case breaks a part of the system while real work runs and
reports tasks expected, completed, lost, run again and made twice, and how long recovery took.

`make test` runs each case reduced; `make faults` (TREADLE_FAULTS=full) at full size.  A case
passes only with nothing lost and no idempotent effect made twice.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightkube import ApiError, Client, KubeConfig

from support.cluster import Cluster
from support.faults import (
    FULL,
    Counts,
    Progress,
    Report,
    fan_out,
    job_fan_out,
    kill_apiserver_and_restart,
    restart_redis,
    scaled,
    worker_pids,
    worker_pool,
)
from support.operator import OperatorProcess
from support.redis_server import RedisServer
from treadle.core import ranges
from treadle.services import kube

PYTHONPATH_ENV = [{"name": "PYTHONPATH", "value": str(Path(__file__).parents[1])}]

TIMEOUT_SECONDS = 900 if FULL else 240
# A case waits up to TIMEOUT_SECONDS for its workflow, after faults spread over minutes at full
# size: pytest-timeout's default (300 s) would cut a slow but clean case short.
pytestmark = pytest.mark.timeout(TIMEOUT_SECONDS + 300)


def run_with_faults(
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
    report: Report,
    *,
    case: str,
    tasks: int,
    seconds: float,
    faults: int,
    inject: Any,
    spacing: tuple[float, float],
    pool: dict[str, Any] | None = None,
    manifest: str | None = None,
) -> Counts:
    """Runs a fan-out of `tasks` idempotent tasks (on a WorkerPool `pool` with this spec, made
    first, or on workers of its own; or `manifest`, its `{log}` the effects log), calls
    `inject()` `faults` times at random moments while it runs, waits for its end and counts."""
    log = tmp_path / "effects"
    name = case.replace("_", "-")
    if pool is not None:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=worker_pool("pool", **pool))
        cluster.wait("twp/pool", namespace, "condition=Ready", timeout_seconds=120)
    manifest = (manifest or "").replace("{log}", str(log)) or fan_out(
        name, log, tasks, seconds, "pool" if pool is not None else None
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    progress = Progress(cluster, namespace, name)
    started = time.monotonic()
    made = 0
    try:
        progress.wait_until_done(1, timeout_seconds=180)
        rng = random.Random(case)
        # The first fault comes at once (the first task is done): a fast run must not end
        # before any fault was made; the others come `spacing` apart.
        while made < faults and progress.phase not in ("Succeeded", "Failed"):
            if inject(cluster.get("twf", name, namespace)["metadata"]["uid"]):
                progress.fault()
                made += 1
            time.sleep(rng.uniform(*spacing))
        phase = progress.wait_for(("Succeeded", "Failed"), TIMEOUT_SECONDS)
    finally:
        recovery = progress.stop()
    counts = Counts(case, made, tasks, recovery_seconds=recovery, outcome=phase)
    counts.seconds = round(time.monotonic() - started, 1)
    counts.add_side_effects(log, {str(i) for i in range(tasks)})
    status = cluster.get("twf", name, namespace)["status"]
    if status.get("progress") != f"{tasks}/{tasks}":
        counts.notes.append(f"status progress {status.get('progress')}")
    report.add(counts)
    return counts


def killing(operator: OperatorProcess) -> Any:
    """A fault that SIGKILLs the operator and starts it again."""

    def kill_the_operator(_: str) -> bool:
        operator.crash_and_restart()
        return True

    return kill_the_operator


def assert_clean(counts: Counts) -> None:
    assert counts.outcome == "Succeeded", counts
    assert counts.lost == 0, counts
    assert counts.duplicate_effects == 0, counts


def test_worker_processes_sigkilled_at_random_moments(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path, report: Report
) -> None:
    def kill_a_worker(uid: str) -> bool:
        pids = worker_pids(f"wf-{uid}")
        if not pids:
            return False  # both in crash-loop back-off: wait for one to come back
        os.kill(random.choice(pids), signal.SIGKILL)
        return True

    counts = run_with_faults(
        crds,
        namespace,
        tmp_path,
        report,
        case="worker_sigkill",
        tasks=scaled(2000, 200),
        seconds=0.3 if FULL else 0.1,
        faults=scaled(20, 2),
        inject=kill_a_worker,
        spacing=(0.5, 1.5),
    )
    assert_clean(counts)
    assert counts.faults >= 1


def test_pool_workers_sigkilled_at_random_moments(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path, report: Report
) -> None:
    """A WorkerPool's worker dies mid-attempt: its attempts go to the pool's other workers
    (and its replacement) with nothing lost and no effect made twice."""

    def kill_a_pool_worker(_: str) -> bool:
        pids = worker_pids(f"{namespace}.pool")
        if not pids:
            return False
        os.kill(random.choice(pids), signal.SIGKILL)
        return True

    counts = run_with_faults(
        crds,
        namespace,
        tmp_path,
        report,
        case="pool_worker_sigkill",
        tasks=scaled(2000, 200),
        seconds=0.3 if FULL else 0.1,
        faults=scaled(20, 2),
        inject=kill_a_pool_worker,
        spacing=(0.5, 1.5),
        pool={"replicas": {"min": 2, "max": 2}, "slotsPerWorker": 4},
    )
    assert_clean(counts)
    assert counts.faults >= 1


def test_a_pool_scaled_down_and_up_during_a_burst(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path, report: Report
) -> None:
    """Scale-down drains: a worker told to stop takes nothing new and finishes what it holds,
    so shrinking a pool mid-run loses nothing and runs nothing twice."""
    sizes = iter([1, 3] * 50)

    def rescale(_: str) -> bool:
        crds.kubectl("scale", "twp/pool", "-n", namespace, f"--replicas={next(sizes)}")
        return True

    counts = run_with_faults(
        crds,
        namespace,
        tmp_path,
        report,
        case="pool_scale_down",
        tasks=scaled(2000, 200),
        seconds=0.3 if FULL else 0.2,
        faults=scaled(10, 2),
        inject=rescale,
        spacing=(2.0, 4.0),
        pool={
            "autoscaling": False,
            "replicas": {"min": 1, "max": 3, "desired": 3},
            "slotsPerWorker": 4,
        },
    )
    assert_clean(counts)
    assert counts.faults >= 1
    assert counts.re_run == 0, counts  # drained: no attempt was cut short


def test_a_pools_image_rolled_out_mid_run(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path, report: Report
) -> None:
    """A change of the pool's pod template (here its env, as a new image would) rolls its
    Deployment: old workers drain while new ones start, nothing lost, nothing run twice."""
    rollouts = iter(range(1, 100))

    def roll(_: str) -> bool:
        change = {
            "spec": {"env": [*PYTHONPATH_ENV, {"name": "ROLLOUT", "value": str(next(rollouts))}]}
        }
        crds.kubectl("patch", "twp/pool", "-n", namespace, "--type=merge", "-p", json.dumps(change))
        return True

    counts = run_with_faults(
        crds,
        namespace,
        tmp_path,
        report,
        case="pool_rolling_update",
        tasks=scaled(2000, 200),
        seconds=0.3 if FULL else 0.2,
        faults=scaled(5, 1),
        inject=roll,
        spacing=(4.0, 8.0),
        pool={"replicas": {"min": 2, "max": 2}, "slotsPerWorker": 4},
    )
    assert_clean(counts)
    assert counts.faults >= 1
    rolled = crds.get("deployment", "treadle-pool-pool", namespace)
    assert rolled["metadata"]["generation"] > 1  # the template did change mid-run
    assert counts.re_run == 0, counts  # drained: no attempt was cut short


def test_the_operator_sigkilled_during_a_run(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path, report: Report
) -> None:
    counts = run_with_faults(
        crds,
        namespace,
        tmp_path,
        report,
        case="operator_sigkill",
        tasks=scaled(1000, 100),
        seconds=0.5 if FULL else 0.2,
        faults=scaled(10, 2),
        inject=killing(operator),
        spacing=(1.0, 3.0),
    )
    assert_clean(counts)


def test_the_operator_sigkilled_while_job_steps_start(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path, report: Report
) -> None:
    """Issue #34: a Job per attempt, named by the attempt, so an operator killed between a
    Job's create and the status write that records it makes no second Job, and loses none."""
    tasks = scaled(100, 20)

    counts = run_with_faults(
        crds,
        namespace,
        tmp_path,
        report,
        case="operator_sigkill_job_steps",
        tasks=tasks,
        seconds=0.2,
        faults=scaled(10, 2),
        inject=killing(operator),
        spacing=(0.5, 2.0),
        manifest=job_fan_out("operator-sigkill-job-steps", "{log}", tasks, 0.2, 20),
    )
    assert_clean(counts)
    status = crds.get("twf", "operator-sigkill-job-steps", namespace)["status"]["tasks"]["work"]
    attempts = tasks + sum(
        (int(count) - 1) * len(ranges.decode(items))
        for count, items in (status.get("itemAttempts") or {}).items()
    )
    made = json.loads(
        crds.kubectl(
            "get", "jobs", "-n", namespace, "-l", "treadle.dev/task=work", "-o", "json"
        ).stdout
    )["items"]
    claims = [json.loads(j["metadata"]["annotations"]["treadle.dev/attempt"]) for j in made]
    per_attempt = {(c["item"], c["attempt"]) for c in claims}
    counts.notes.append(f"{len(made)} Jobs for {attempts} attempts")
    assert len(per_attempt) == len(made) == attempts, counts


def test_redis_restarted_with_its_append_only_file(
    crds: Cluster,
    operator: OperatorProcess,
    namespace: str,
    tmp_path: Path,
    report: Report,
    redis_server_process: RedisServer,
) -> None:
    def restart(_: str) -> bool:
        restart_redis(redis_server_process)
        return True

    counts = run_with_faults(
        crds,
        namespace,
        tmp_path,
        report,
        case="redis_restart",
        tasks=scaled(2000, 200),
        seconds=0.3 if FULL else 0.1,
        faults=scaled(3, 1),
        inject=restart,
        spacing=(2.0, 4.0),
    )
    assert_clean(counts)


def test_redis_losing_all_its_data_mid_run(
    crds: Cluster,
    operator: OperatorProcess,
    namespace: str,
    tmp_path: Path,
    report: Report,
    redis_server_process: RedisServer,
) -> None:
    def flush(_: str) -> bool:
        client = redis.Redis.from_url(redis_server_process.operator_url)
        client.flushdb()
        client.close()
        return True

    counts = run_with_faults(
        crds,
        namespace,
        tmp_path,
        report,
        case="redis_flush",
        tasks=scaled(2000, 200),
        seconds=0.3 if FULL else 0.1,
        faults=1,
        inject=flush,
        spacing=(1.0, 2.0),
    )
    assert_clean(counts)


def test_the_api_server_killed_and_restarted_mid_run(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path, report: Report
) -> None:
    away: list[float] = []

    def restart(_: str) -> bool:
        away.append(kill_apiserver_and_restart())
        return True

    counts = run_with_faults(
        crds,
        namespace,
        tmp_path,
        report,
        case="apiserver_restart",
        tasks=scaled(2000, 200),
        seconds=0.3 if FULL else 0.1,
        faults=scaled(2, 1),
        inject=restart,
        spacing=(2.0, 4.0),
    )
    counts.notes.append(f"API server away {max(away):.1f} s at most")
    assert_clean(counts)


def test_the_lease_holder_killed_while_it_holds_a_pipeline_lock(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path, report: Report
) -> None:
    """The operator holds a SyncJob run's pipeline lock; it dies mid-run. The restarted one
    takes the lock again as the same holder, sees the run to its end once, releases it, and
    the next slot runs."""
    ran = tmp_path / "ran.log"
    slots = scaled(3, 1)
    job = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "SyncJob",
        "metadata": {"name": "held"},
        "spec": {
            "schedule": "*/15 * * * * *",
            "pipeline": "orders",
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "sync",
                            "image": "x",
                            "command": ["sh", "-c", f"sleep 3; echo $HOSTNAME >> {ran}"],
                        }
                    ]
                }
            },
        },
    }
    started = time.monotonic()
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job))
    recoveries, seen = [], []
    for _ in range(slots):
        running = poll(lambda: active_run(crds, namespace, seen), 60, "a new run")
        seen.append(running)
        killed = time.monotonic()
        operator.crash_and_restart()
        poll(lambda r=running: finished(crds, namespace, r), 60, f"{running} to finish")
        recoveries.append(time.monotonic() - killed)
    runs = ran.read_text().split()
    counts = Counts(
        "lease_holder_killed",
        faults=slots,
        expected=slots,
        completed=len(set(runs) & set(seen)),
        lost=len(set(seen) - set(runs)),
        executions=len(runs),
        re_run=len(runs) - len(set(runs)),
        finished_twice=len(runs) - len(set(runs)),
        duplicate_effects=len(runs) - len(set(runs)),
        recovery_seconds=round(max(recoveries), 1),
        seconds=round(time.monotonic() - started, 1),
        outcome="Succeeded",
    )
    locks = crds.plugin("lock", "list", "-n", namespace).stdout
    if "(free)" not in locks:
        counts.outcome = "lock still held"
    report.add(counts)
    assert counts.clean, counts
    assert counts.outcome == "Succeeded", locks


def active_run(cluster: Cluster, namespace: str, seen: list[str]) -> str | None:
    status = cluster.get("sj", "held", namespace).get("status") or {}
    run = status.get("activeRun")
    return run if run and run not in seen else None


def finished(cluster: Cluster, namespace: str, run: str) -> bool:
    status = cluster.get("sj", "held", namespace).get("status") or {}
    return status.get("activeRun") != run and status.get("lastOutcome") == "Succeeded"


def poll(check: Any, timeout_seconds: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)
    return found


def test_a_poison_task_is_dead_lettered_and_the_rest_complete(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path, report: Report
) -> None:
    """A task that kills every worker that runs it: after the redelivery limit it is reported
    failed, retried by its policy, then dead-lettered; its siblings all complete."""
    log = tmp_path / "effects"
    tasks = scaled(500, 50)
    body = json.loads(fan_out("poisoned", log, tasks, 0.05))
    body["spec"]["tasks"].append(
        {"name": "poison", "retry": {"limit": 1}, "python": {"callable": "support.tasks:die"}}
    )
    started = time.monotonic()
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    crds.wait("twf/poisoned", namespace, "jsonpath={.status.phase}=Failed", TIMEOUT_SECONDS)
    status = crds.get("twf", "poisoned", namespace)["status"]
    counts = Counts("poison_task", faults=1, expected=tasks, outcome=status["phase"])
    counts.seconds = round(time.monotonic() - started, 1)
    counts.add_side_effects(log, {str(i) for i in range(tasks)})
    letters = status.get("deadLetters") or []
    [letter] = [entry for entry in letters if entry["task"] == "poison"]
    counts.notes.append(f"dead letter: {letter['task']}: {letter['error']}")
    counts.notes += [f"also dead-lettered: {json.dumps(e)[:200]}" for e in letters if e != letter]
    report.add(counts)
    assert letter["error"].startswith("poison: its worker went silent"), letter
    assert status["tasks"]["work"]["succeeded"] == tasks, (status["tasks"]["work"], letters)
    assert counts.clean, counts


def test_junk_and_forged_results_from_another_tenant_change_nothing(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path, report: Report
) -> None:
    """A hostile workflow's tasks write a junk entry and a forged success for every child of a
    victim's fan-out into their own result stream, and try the victim's (issue #13, problem 4);
    the first also replaces its stream by a string, writes entries no decoder reads and deletes
    the stream (issue #31, problem 2: any of these stopped every tenant's results).  A forged
    success taken would leave its child's effect unmade: counted as lost."""
    log = tmp_path / "effects"
    tasks = scaled(500, 50)
    started = time.monotonic()
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=fan_out("victim", log, tasks, 0.2))
    crds.wait("twf/victim", namespace, "jsonpath={.status.phase}=Running")
    victim = crds.get("twf", "victim", namespace)
    hostile = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "hostile"},
        "spec": {
            "workers": {"env": [{"name": "PYTHONPATH", "value": str(Path(__file__).parents[1])}]},
            "concurrency": 1,  # one child at a time: the first wrecks the stream the rest use
            "tasks": [
                {
                    "name": "pollute",
                    "forEach": "{{ range(4) | list }}",
                    # the child whose stream broke under it fails (its result may be lost):
                    # not retried, so that it does not break it again
                    "retry": {"limit": 0},
                    "python": {
                        "callable": "support.tasks:pollute",
                        "kwargs": {
                            "own_uid": "{{ workflow.uid }}",
                            "victim_uid": victim["metadata"]["uid"],
                            "victim_run": victim["status"]["runGeneration"],
                            "items": tasks,
                            "wreck": "{{ item == 0 }}",
                        },
                    },
                }
            ],
        },
    }
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(hostile))
    crds.wait("twf/victim", namespace, "condition=Ready", TIMEOUT_SECONDS)
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not (ended := crds.get("twf", "hostile", namespace).get("status", {})).get("finishedAt"):
        assert time.monotonic() < deadline, f"the hostile workflow never ended: {ended}"
        time.sleep(0.5)
    pollute = ended["tasks"]["pollute"]
    counts_note = (
        f"hostile workflow {ended['phase']}: {pollute.get('succeeded')} children succeeded, "
        f"{pollute.get('deadLettered')} dead-lettered"
    )
    status = crds.get("twf", "victim", namespace)["status"]
    written = 4 * tasks * 2 + 4
    counts = Counts("forged_results", faults=written, expected=tasks, outcome=status["phase"])
    counts.seconds = round(time.monotonic() - started, 1)
    counts.add_side_effects(log, {str(i) for i in range(tasks)})
    counts.notes.append(
        f"{written} junk entries and forged successes written to the hostile pool's own stream, "
        "which it also replaced by a string and deleted; "
        f"{4 * tasks} writes to the victim's stream refused; operator peak RSS "
        f"{peak_rss_mib(operator)} MiB; {counts_note}"
    )
    report.add(counts)
    assert status["phase"] == "Succeeded", status
    assert counts.clean, counts


# hostile manifests ----------------------------------------------------------------------------

NAMES = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
TEXT = st.text(min_size=1, max_size=40)


def task(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": {"args": ["echo", name]}, **extra}


def workflow(tasks: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"tasks": tasks, **spec}


@st.composite
def hostile(draw: st.DrawFn) -> tuple[str, dict[str, Any], str]:
    """(kind, spec or a whole body, a word the refusal must contain)."""
    a, b, c = draw(st.lists(NAMES, min_size=3, max_size=3, unique=True))
    kind = draw(st.sampled_from(sorted(HOSTILE)))
    return HOSTILE[kind](draw, a, b, c)


def _cycle(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, dict[str, Any], str]:
    tasks = [task(a, dependsOn=[c]), task(b, dependsOn=[a]), task(c, dependsOn=[b])]
    return "Workflow", workflow(tasks), "cycle"


def _unknown_dependency(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    return "Workflow", workflow([task(a, dependsOn=[b])]), "dependsOn"


def _template(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    bad = draw(
        st.sampled_from(
            [
                "{{ ",
                "{{ ''.__class__.__mro__ }}",
                "{{ params|attr('x') }}",
                "{% for x in %}",
                f"{{{{ tasks.{b}.output }}}}",
                "{{ nowhere.to.be.found }}",
                "{{ " + draw(TEXT) + " }}}",
            ]
        )
    )
    tasks = [task(a, command={"args": ["echo", bad]}), task(b)]
    return "Workflow", workflow(tasks), "spec.tasks"


def _bad_retry(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    limit = draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=101), TEXT))
    return "Workflow", workflow([task(a, retry={"limit": limit})]), "limit"


def _two_actions(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    both = task(a, python={"callable": "mod:fn"})
    none = {"name": a}
    return "Workflow", workflow([draw(st.sampled_from([both, none]))]), "action"


def _duplicate(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    return "Workflow", workflow([task(a), task(a)]), "Duplicate"


def _concurrency(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    value = draw(st.one_of(st.integers(max_value=0), st.integers(min_value=100_001)))
    return "Workflow", workflow([task(a)], concurrency=value), "concurrency"


def _callable(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    target = draw(st.text(max_size=30).filter(lambda t: ":" not in t))
    return "Workflow", workflow([{"name": a, "python": {"callable": target}}]), "callable"


def _huge(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    args = ["x" * 10] * draw(st.integers(min_value=1025, max_value=3000))
    return "Workflow", workflow([task(a, command={"args": args})]), "args"


def _schedule(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    schedule = draw(st.one_of(TEXT, st.just("61 * * * *"), st.just("* * * *")))
    spec = {
        "schedule": schedule,
        "template": {"spec": {"containers": [{"name": "s", "image": "x", "command": ["true"]}]}},
    }
    return "SyncJob", spec, "schedule"


def _time_zone(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    spec = {
        "schedule": "*/5 * * * *",
        "timeZone": draw(st.sampled_from(["Mars/Olympus", "UTC+25", a.upper() + "/X"])),
        "template": {"spec": {"containers": [{"name": "s", "image": "x", "command": ["true"]}]}},
    }
    return "SyncJob", spec, "timeZone"


def _exhausting_template(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    """Issue #13, problem 1: templates whose check or render would exhaust the operator."""
    n = draw(st.integers(min_value=7, max_value=12))
    bad = draw(
        st.sampled_from(
            [
                f"{{{{ 'a' * 10**{n} }}}}",
                f"{{{{ [0] * 10**{n} }}}}",
                f"{{{{ 'x'|center(10**{n}) }}}}",
                f"{{{{ range(10**{n})|list }}}}",
                f"{{{{ 2 ** (10**{n}) }}}}",
                "{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}",
                "{{ lipsum(100000) }}",
                "{% set s %}{{ 'a' }}{% endset %}{{ s }}",
                "{{ '%0100000d'|format(1) }}",
            ]
        )
    )
    return "Workflow", workflow([task(a, command={"args": ["echo", bad]})]), "spec.tasks[0]"


def _hostile_pod(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    """Issue #13, problem 3: run pods that would reach the node."""
    field, value = draw(
        st.sampled_from(
            [
                ("hostNetwork", True),
                ("hostPID", True),
                ("serviceAccountName", "default"),
                ("nodeName", "treadle-local"),
                ("volumes", [{"name": "root", "hostPath": {"path": "/"}}]),
                ("securityContext", {"runAsUser": 0}),
                ("tolerations", [{"operator": "Exists"}]),
            ]
        )
    )
    container: dict[str, Any] = {"name": "s", "image": "x", "command": ["true"]}
    named = field
    if draw(st.booleans()):
        container["securityContext"] = {"privileged": True}
        named = "privileged"
    pod = {"containers": [container], field: value}
    return "SyncJob", {"schedule": "*/5 * * * *", "template": {"spec": pod}}, named


def _lock_name(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    bad = draw(st.sampled_from([f"{a}..{b}", f".{a}", f"{a}.", f"{a}_{b}", f"{a.upper()}"]))
    spec = {
        "schedule": "*/5 * * * *",
        "tables": [bad],
        "template": {"spec": {"containers": [{"name": "s", "image": "x", "command": ["true"]}]}},
    }
    return "SyncJob", spec, "tables"


def _scheduled_workflow(draw: st.DrawFn, a: str, b: str, c: str) -> tuple[str, Any, str]:
    """Issue #18: scheduled workflows whose run could not be made, or would exhaust."""
    pod = {"spec": {"containers": [{"name": "s", "image": "x", "command": ["true"]}]}}
    inline = {"spec": workflow([task(a)])}
    n = draw(st.integers(min_value=7, max_value=12))
    spec, word = draw(
        st.sampled_from(
            [
                ({"workflow": {**inline, "params": {a: f"{{{{ 'a' * 10**{n} }}}}"}}},
                 f"spec.workflow.params.{a}"),
                ({"workflow": {**inline, "params": {a: "{{ slot.__class__ }}"}}},
                 f"spec.workflow.params.{a}"),
                ({"workflow": {"spec": workflow([task(a, dependsOn=[b]), task(b, dependsOn=[a])])}},
                 "spec.workflow.spec"),
                ({"workflow": inline, "template": pod}, "not both"),
                ({}, "not both"),
                ({"workflow": {**inline, "workflowTemplateRef": {"name": a}}}, "not both"),
                ({"workflow": inline, "catchUp": {"policy": "All", "maxRuns": 10**6}}, "maxRuns"),
                ({"workflow": inline, "concurrencyPolicy": draw(TEXT)}, "concurrencyPolicy"),
            ]
        )
    )  # fmt: skip
    return "SyncJob", {"schedule": "*/5 * * * *", **spec}, word


HOSTILE = {
    "scheduled workflow": _scheduled_workflow,
    "exhausting template": _exhausting_template,
    "hostile pod": _hostile_pod,
    "lock name": _lock_name,
    "cycle": _cycle,
    "unknown dependency": _unknown_dependency,
    "template": _template,
    "retry": _bad_retry,
    "actions": _two_actions,
    "duplicate": _duplicate,
    "concurrency": _concurrency,
    "callable": _callable,
    "huge": _huge,
    "schedule": _schedule,
    "time zone": _time_zone,
}


def test_hostile_manifests_are_each_refused_with_a_message_naming_the_field(
    crds: Cluster, operator: OperatorProcess, namespace: str, report: Report
) -> None:
    client = Client(KubeConfig.from_file(crds.kubeconfig), namespace=namespace)
    outcomes: dict[str, int] = {"refused": 0, "accepted": 0, "unclear": 0, "server error": 0}
    examples: list[str] = []
    started = time.monotonic()

    @settings(
        max_examples=scaled(1000, 60),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(hostile())
    def apply(case: tuple[str, dict[str, Any], str]) -> None:
        kind, spec, word = case
        resource = kube.Workflow if kind == "Workflow" else kube.SyncJob
        name = f"h-{secrets.token_hex(4)}"
        body = {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
        try:
            client.create(resource.from_dict(body))
        except ApiError as error:
            message = error.status.message or ""
            if error.status.code and error.status.code >= 500:
                outcomes["server error"] += 1
                examples.append(f"{kind}: {message[:200]}")
            elif word.lower() in message.lower():
                outcomes["refused"] += 1
            else:
                outcomes["unclear"] += 1
                examples.append(f"{kind} (wanted {word!r}): {message[:300]}")
            return
        outcomes["accepted"] += 1
        examples.append(f"{kind} accepted: {json.dumps(spec)[:300]}")

    apply()
    client.close()
    total = sum(outcomes.values())
    # The operator is alive and still runs good work.
    assert operator.process.poll() is None
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(good_workflow()))
    crds.wait("twf/after-the-storm", namespace, "condition=Ready", timeout_seconds=120)
    counts = Counts(
        "hostile_manifests",
        faults=total,
        expected=total,
        completed=outcomes["refused"],
        lost=total - outcomes["refused"],
        seconds=round(time.monotonic() - started, 1),
        outcome="Succeeded" if outcomes["refused"] == total else "some not refused clearly",
        notes=[json.dumps(outcomes), f"operator peak RSS {peak_rss_mib(operator)} MiB",
               *examples[:5]],
    )  # fmt: skip
    report.add(counts)
    assert outcomes["refused"] == total, (outcomes, examples[:10])


def peak_rss_mib(operator: OperatorProcess) -> float:
    """The operator process's peak resident memory (VmHWM), in MiB."""
    status = Path(f"/proc/{operator.process.pid}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    return round(kib / 1024, 1)


def good_workflow() -> dict[str, Any]:
    return {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "after-the-storm"},
        "spec": {"tasks": [{"name": "a", "command": {"args": ["true"]}}]},
    }
