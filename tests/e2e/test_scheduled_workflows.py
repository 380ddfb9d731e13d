"""Scheduled workflows end to end on the local cluster: a Workflow per slot, skip-and-retry under
a held lock, Replace, catch-up of the slots missed while the operator was away, and backfills
(resumed across an operator restart).  Schedules in seconds (a six-field cron)."""

from __future__ import annotations

import itertools
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from support.cluster import REPO, Cluster
from support.operator import OperatorProcess
from support.syncjobs import eventually, reasons, status_of

RETRY_FAST = {"ratio": 0.1, "minSeconds": 2, "maxSeconds": 3}


def manifest(kind: str, name: str, spec: dict[str, Any]) -> str:
    body = {"apiVersion": "treadle.dev/v1alpha1", "kind": kind, "metadata": {"name": name}}
    return json.dumps({**body, "spec": spec})


def sh(name: str, script: str) -> dict[str, Any]:
    return {"name": name, "command": {"args": ["sh", "-c", script]}}


def apply(cluster: Cluster, namespace: str, text: str, check: bool = True) -> Any:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=text, check=check)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def run_workflows(cluster: Cluster, namespace: str, job: str) -> list[dict[str, Any]]:
    found = cluster.kubectl(
        "get", "twf", "-n", namespace, "-l", f"treadle.dev/syncjob={job}", "-o", "json"
    )
    return list(json.loads(found.stdout)["items"])


def slot_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_syncjob_runs_its_template_as_a_workflow_per_slot_with_the_slot_in_its_params(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "days.log"
    template = {
        "params": {"day": ""},
        "tasks": [sh("record", f"echo {{{{ params.day }}}} >> {log}")],
    }
    apply(crds, namespace, manifest("WorkflowTemplate", "etl", template))
    ref = {"name": "etl"}
    typo = {"schedule": "*/10 * * * * *",
            "workflow": {"workflowTemplateRef": ref, "params": {"dya": "{{ slot }}"}}}  # fmt: skip
    refused = apply(crds, namespace, manifest("SyncJob", "nightly", typo), check=False)
    assert refused.returncode != 0
    assert "spec.workflow.params.dya: WorkflowTemplate 'etl' has no parameter 'dya'" in (
        refused.stderr
    )
    job = {"schedule": "*/10 * * * * *", "successfulRunsHistoryLimit": 1,
           "workflow": {"workflowTemplateRef": ref, "params": {"day": "{{ slot }}"}}}  # fmt: skip
    apply(crds, namespace, manifest("SyncJob", "nightly", job))
    eventually(lambda: len(lines(log)) >= 2, "two slots' workflows", timeout_seconds=60)
    days = lines(log)[:2]
    first, second = (slot_time(day) for day in days)
    assert second - first == timedelta(seconds=10)  # one run per slot, each knowing its slot
    assert first.second % 10 == 0
    status = eventually(
        lambda: (
            (s := status_of(crds, namespace, "nightly")).get("lastOutcome") == "Succeeded"
            and not s.get("activeRuns")
            and s
        ),
        "the job at rest after a success",
    )
    assert days[0] in status["succeededSlots"] or status["succeededSlots"].startswith(days[0])
    kept = eventually(
        lambda: (found := run_workflows(crds, namespace, "nightly")) and len(found) == 1 and found,
        "the history limit prunes older runs",
    )
    name = kept[0]["metadata"]["name"]
    assert name.startswith("nightly-2")
    assert kept[0]["metadata"]["ownerReferences"][0]["kind"] == "SyncJob"
    started = [r for r in reasons(crds, namespace, "nightly") if r.startswith("Started:")]
    assert started
    assert "holding treadle-pipeline-nightly" in started[0]


def test_a_workflow_run_under_a_held_lock_is_skipped_retried_in_its_slot_and_holds_the_lock(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    crds.plugin("lock", "hold", "pipeline", "orders", "--for", "5m", "-n", namespace)
    spec = {"tasks": [sh("load", f"echo ran >> {log}; sleep 3")]}
    job = {"schedule": "*/20 * * * * *", "pipeline": "orders", "skippedRetry": RETRY_FAST,
           "workflow": {"spec": spec}}  # fmt: skip
    apply(crds, namespace, manifest("SyncJob", "orders", job))
    skipped = eventually(
        lambda: (s := status_of(crds, namespace, "orders")).get("attemptsInSlot", 0) >= 2 and s,
        "two skipped attempts in a slot",
    )
    assert (skipped["lastOutcome"], skipped["lastSkipReason"]) == ("Skipped", "PipelineLocked")
    assert not run_workflows(crds, namespace, "orders")
    crds.plugin("lock", "release", "pipeline", "orders", "-n", namespace)
    running = eventually(
        lambda: (s := status_of(crds, namespace, "orders")).get("activeRun") and s, "a run"
    )
    run = running["activeRun"]
    held = crds.get("lease", "treadle-pipeline-orders", namespace)["spec"]["holderIdentity"]
    assert held == run  # the workflow's run holds the pipeline lock
    assert running["activeRuns"][0]["kind"] == "Workflow"
    done = eventually(
        lambda: (s := status_of(crds, namespace, "orders")).get("lastOutcome") == "Succeeded" and s,
        "the workflow's success",
    )
    assert done["currentSlot"] == skipped["currentSlot"]  # retried inside the same slot
    assert lines(log) == ["ran"]
    workflow = crds.get("twf", run, namespace)
    assert workflow["status"]["phase"] == "Succeeded"
    assert "(free)" in crds.plugin("lock", "list", "-n", namespace).stdout


def test_replace_terminates_the_running_workflow_when_the_next_slot_begins(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "starts.log"
    spec = {"tasks": [sh("long", f"echo {{{{ params.slot }}}} >> {log}; sleep 120")]}
    job = {"schedule": "*/10 * * * * *", "concurrencyPolicy": "Replace",
           "workflow": {"spec": spec, "params": {"slot": "{{ slot }}"}}}  # fmt: skip
    apply(crds, namespace, manifest("SyncJob", "rolling", job))
    eventually(lambda: len(lines(log)) >= 2, "the next slot's run started", timeout_seconds=60)
    first, second = lines(log)[:2]
    assert slot_time(second) - slot_time(first) == timedelta(seconds=10)
    by_slot = {
        w["metadata"]["annotations"]["treadle.dev/slot"]: w
        for w in run_workflows(crds, namespace, "rolling")
    }
    assert by_slot[first]["status"]["phase"] == "Terminated"
    assert by_slot[second]["status"]["phase"] in ("Pending", "Running")
    told = reasons(crds, namespace, "rolling")
    assert any(r.startswith("Replacing: run rolling-") for r in told), told
    assert any(r.startswith("Replaced:") for r in told), told
    status = status_of(crds, namespace, "rolling")
    assert not status.get("consecutiveFailures")  # a replaced run is no failure


def test_catch_up_all_runs_the_latest_missed_slots_oldest_first_after_the_operator_was_away(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "slots.log"
    template = {"spec": {"containers": [
        {"name": "sync", "image": "x", "command": ["sh", "-c", f"echo $TREADLE_SLOT >> {log}"]}
    ]}}  # fmt: skip
    job = {"schedule": "*/4 * * * * *", "catchUp": {"policy": "All", "maxRuns": 3},
           "template": template}  # fmt: skip
    apply(crds, namespace, manifest("SyncJob", "hourly", job))
    eventually(lambda: lines(log), "a first run")
    crashed = datetime.now(UTC)
    operator.crash_and_restart(away_seconds=22)  # five or six slots go by
    back = datetime.now(UTC)
    eventually(
        lambda: any(r.startswith("CatchingUp:") for r in reasons(crds, namespace, "hourly")),
        "catching up",
    )
    eventually(
        lambda: len([t for t in lines(log) if slot_time(t) > back + timedelta(seconds=4)]) >= 1,
        "the schedule goes on after catching up",
        timeout_seconds=60,
    )
    ran = [slot_time(t) for t in lines(log)]
    assert ran == sorted(set(ran))  # oldest first, no slot twice
    # The latest three slots at the return (the operator looks a moment before it reports
    # healthy), and at most the slot begun just after.
    missed = [t for t in ran if crashed < t <= back + timedelta(seconds=4)]
    assert 3 <= len(missed) <= 4, ran
    assert all(b - a == timedelta(seconds=4) for a, b in itertools.pairwise(missed))
    assert missed[0] > crashed + timedelta(seconds=4)  # the older missed slots were given up


def backfill(cluster: Cluster, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return cluster.plugin("sync", "backfill", "history", "-n", namespace, *args, check=False)


def hours_ago(hour: datetime, start: int, end: int) -> list[str]:
    """`--from` and `--to` that many hours before `hour`, written without a zone (read in the
    job's time zone, UTC)."""
    return [
        "--from", (hour - timedelta(hours=start)).strftime("%Y-%m-%dT%H:%M"),
        "--to", (hour - timedelta(hours=end)).strftime("%Y-%m-%dT%H:%M"),
    ]  # fmt: skip


def test_backfill_runs_each_slot_once_skips_succeeded_ones_and_resumes_after_a_restart(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "filled.log"
    spec = {"tasks": [sh("fill", f"sleep 2; echo {{{{ params.slot }}}} >> {log}")]}
    job = {"schedule": "0 * * * *", "workflow": {"spec": spec, "params": {"slot": "{{ slot }}"}}}
    apply(crds, namespace, manifest("SyncJob", "history", job))
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first = backfill(crds, namespace, *hours_ago(hour, 5, 1), "--parallel", "2", "--watch")
    assert first.returncode == 0, first.stderr
    assert "backfill 1 of" in first.stdout
    assert "4 slots, 2 at a time" in first.stdout
    assert first.stdout.splitlines()[-1] == (
        "Complete: 4/4 slots: 4 succeeded, 0 failed, 0 skipped (had succeeded)"
    )
    filled = lines(log)
    assert sorted(filled) == [
        (hour - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ") for h in (5, 4, 3, 2)
    ]
    names = {w["metadata"]["name"] for w in run_workflows(crds, namespace, "history")}
    assert all(name.endswith("-b1") for name in names)

    wider = backfill(crds, namespace, *hours_ago(hour, 6, 1), "--watch")
    assert wider.returncode == 0, wider.stderr
    assert wider.stdout.splitlines()[-1].endswith(
        "1 succeeded, 0 failed, 4 skipped (had succeeded)"
    )
    assert len(lines(log)) == 5

    refused = backfill(crds, namespace, *hours_ago(hour, -2, -3))
    assert refused.returncode == 1
    assert "is in the future" in refused.stderr

    # A rerun of three slots one at a time, the operator killed while the first runs.
    rerun = backfill(crds, namespace, *hours_ago(hour, 4, 1), "--rerun")
    assert rerun.returncode == 0, rerun.stderr
    eventually(
        lambda: (status_of(crds, namespace, "history").get("activeRuns") or [None])[0],
        "the backfill's first run",
    )
    operator.crash_and_restart()
    done = eventually(
        lambda: (
            (b := status_of(crds, namespace, "history").get("backfill") or {}).get("phase")
            == "Complete"
            and b
        ),
        "the backfill resumed to its end",
        timeout_seconds=90,
    )
    assert (done["id"], done["done"], done["failed"], done["skipped"]) == (3, 3, 0, 0)
    slots = sorted(
        w["metadata"]["annotations"]["treadle.dev/slot"]
        for w in run_workflows(crds, namespace, "history")
        if w["metadata"]["name"].endswith("-b3")
    )
    wanted = [(hour - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ") for h in (4, 3, 2)]
    assert slots == wanted  # one run per slot, though the operator died mid-way
    # Each slot's task ran (a task under way when the operator died may run again: delivery
    # is at least once, docs/queue.md).
    assert set(lines(log)[5:]) == set(wanted)
    status = crds.plugin("sync", "status", "history", "-n", namespace).stdout
    assert "3 Complete" in status


def test_three_backfills_in_a_row_are_each_answered_once_and_none_is_replayed(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """#32: a second backfill of slots that had all succeeded was never taken up, blocked every
    later request, and was replayed when something else woke the job."""
    spec = {"tasks": [sh("fill", "true")]}
    job = {"schedule": "0 * * * *", "workflow": {"spec": spec}}
    apply(crds, namespace, manifest("SyncJob", "history", job))
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for identity in (1, 2, 3):
        answered = backfill(crds, namespace, *hours_ago(hour, 3, 1), "--timeout", "20", "--watch")
        assert answered.returncode == 0, answered.stderr
        assert f"backfill {identity} of" in answered.stdout
        assert answered.stdout.splitlines()[-1].startswith("Complete: 2/2 slots")
    started = crds.plugin("sync", "run", "history", "-n", namespace)
    assert "run history-manual-" in started.stdout
    assert "started" in started.stdout
    eventually(
        lambda: status_of(crds, namespace, "history").get("lastOutcome") == "Succeeded",
        "the run by hand succeeded",
    )
    status = status_of(crds, namespace, "history")
    assert status["backfill"]["id"] == 3  # nothing replayed
    told = reasons(crds, namespace, "history")
    assert [r for r in told if r.startswith("BackfillStarted")]
    assert not [r for r in told if r.startswith("BackfillRefused")]
    assert len([r for r in told if r.startswith("BackfillStarted")]) == 3
    assert "treadle.dev/backfill" not in crds.get("sj", "history", namespace)["metadata"].get(
        "annotations", {}
    )


def test_a_run_by_hand_skipped_on_a_lock_is_reported_as_a_skip(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    spec = {"tasks": [sh("load", "true")]}
    job = {"schedule": "0 0 1 1 *", "pipeline": "orders", "workflow": {"spec": spec}}
    apply(crds, namespace, manifest("SyncJob", "yearly", job))
    crds.plugin("lock", "hold", "pipeline", "orders", "--for", "5m", "-n", namespace)
    skipped = crds.plugin("sync", "run", "yearly", "-n", namespace, check=False)
    assert skipped.returncode == 1
    assert "skipped: treadle-pipeline-orders is held by kubectl:" in skipped.stdout
    manual = status_of(crds, namespace, "yearly")["manualRun"]
    assert (manual["outcome"], manual.get("run")) == ("Skipped", None)
    shown = crds.plugin("sync", "status", "yearly", "-n", namespace).stdout
    assert "Run by hand:" in shown
    assert "Skipped: skipped:" in shown
    crds.plugin("lock", "release", "pipeline", "orders", "-n", namespace)
    started = crds.plugin("sync", "run", "yearly", "-n", namespace)
    assert started.stdout.strip().endswith("started")


def test_a_backfill_waiting_for_a_lock_says_so_and_starts_once_the_holder_releases_it(
    crds: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    """#32: a backfill blocked by a 1 s run's lock waited its whole retry interval (5 min here)
    while `sync status` said nothing of why."""
    release = tmp_path / "release"
    spec = {"tasks": [sh("load", f"while [ ! -e {release} ]; do sleep 0.2; done")]}
    job = {
        "schedule": "0 0 1 1 *",
        "pipeline": "orders",
        "skippedRetry": {"ratio": 0.5, "minSeconds": 300, "maxSeconds": 600},
        "workflow": {"spec": spec},
    }
    apply(crds, namespace, manifest("SyncJob", "yearly", job))
    crds.plugin("sync", "run", "yearly", "-n", namespace)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    last_year = ["--from", f"{hour.year - 1}-01-01T00:00", "--to", f"{hour.year}-01-01T00:00"]
    begun = crds.plugin("sync", "backfill", "yearly", "-n", namespace, *last_year)
    assert "backfill 1 of" in begun.stdout
    waiting = eventually(
        lambda: "waiting:" in (line := crds.plugin("sync", "status", "yearly", "-n", namespace)
                               .stdout) and line,
        "the backfill says what it waits for",
    )  # fmt: skip
    assert "treadle-pipeline-orders is held by yearly-manual-" in waiting
    release.touch()
    done = eventually(
        lambda: (b := status_of(crds, namespace, "yearly").get("backfill") or {}).get("phase")
        == "Complete" and b,
        "the backfill ran once the lock was released",
        timeout_seconds=60,
    )  # fmt: skip
    assert done["done"] == 1


def test_a_24_slot_backfills_runs_are_all_kept_each_told_its_slot_in_its_inline_params(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """#32: examples/09's 24-slot backfill kept 5 of its runs (successfulRunsHistoryLimit), so
    most slots' Workflows, outputs and logs were gone as soon as it ended; and `{{ slot }}` in
    the inline spec's own params ran as that literal text."""
    crds.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples" / "00-worker-pool.yaml"))
    crds.wait("twp/default", namespace, "condition=Ready", timeout_seconds=120)
    spec = {
        "params": {"when": "{{ slot }}"},
        "tasks": [sh("fill", 'echo \'{"slot": "{{ params.when }}"}\'')],
    }
    job = {
        "schedule": "0 * * * *",
        "successfulRunsHistoryLimit": 1,
        "backfillHistoryLimit": 1,
        "workflow": {"spec": spec},
    }
    apply(crds, namespace, manifest("SyncJob", "history", job))
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    day = backfill(crds, namespace, *hours_ago(hour, 25, 1), "--parallel", "8", "--watch")
    assert day.returncode == 0, day.stderr
    assert day.stdout.splitlines()[-1].startswith("Complete: 24/24 slots: 24 succeeded")
    crds.plugin("sync", "run", "history", "-n", namespace)
    eventually(
        lambda: status_of(crds, namespace, "history").get("lastOutcome") == "Succeeded",
        "the run by hand succeeded (and pruned the job's history)",
    )
    kept = run_workflows(crds, namespace, "history")
    filled = [w for w in kept if w["metadata"]["name"].endswith("-b1")]
    assert len(filled) == 24
    for run in filled:  # each run's slot, rendered in its own params and its task's output
        slot = run["metadata"]["annotations"]["treadle.dev/slot"]
        assert run["spec"]["params"]["when"] == slot
        assert run["status"]["tasks"]["fill"]["output"] == {"slot": slot}
    assert len([w for w in kept if "-manual-" in w["metadata"]["name"]]) == 1
    again = backfill(crds, namespace, *hours_ago(hour, 2, 1), "--rerun", "--watch")
    assert again.returncode == 0, again.stderr
    left = sorted(w["metadata"]["name"] for w in run_workflows(crds, namespace, "history"))
    assert [n for n in left if "-b" in n] == [
        n for n in left if n.endswith("-b2")
    ]  # backfillHistoryLimit 1: the first backfill's runs went when the second's ended
