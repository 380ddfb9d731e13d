"""`kubectl treadle get` and `list`: durations as kubectl prints them, and the wide tree."""

from __future__ import annotations

from datetime import UTC, datetime

from treadle.plugin import listing, view

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_a_duration_is_from_start_to_finish_or_to_now_while_it_runs() -> None:
    assert listing.duration({}, NOW) == ""
    done = {"startedAt": "2026-12-03T11:00:00Z", "finishedAt": "2026-12-03T11:00:45Z"}
    assert listing.duration(done, NOW) == "45s"
    assert listing.duration({"startedAt": "2026-12-03T11:56:48Z"}, NOW) == "3m12s"
    assert listing.duration({"startedAt": "2026-12-03T09:55:00Z"}, NOW) == "2h5m"


def test_the_wide_tree_names_each_tasks_action_start_and_whole_error() -> None:
    error = "boom " * 40
    workflow = {
        "metadata": {"name": "etl", "namespace": "ns"},
        "spec": {"tasks": [{"name": "fetch", "http": {"url": "http://x"}}]},
        "status": {
            "phase": "Failed",
            "tasks": {"fetch": {"phase": "DeadLettered", "attempts": 3, "error": error,
                                "startedAt": "2026-12-03T11:00:00Z"}},
        },
    }  # fmt: skip
    narrow = view.render(workflow)[1]
    wide = view.render(workflow, wide=True)[1]
    assert "http" not in narrow
    assert len(narrow) < len(wide)
    assert "http    2026-12-03T11:00:00Z" in wide
    assert wide.endswith(error.rstrip())


def test_a_job_step_shows_its_pod_and_node_and_why_it_waits() -> None:
    workflow = {
        "metadata": {"name": "train", "namespace": "ns"},
        "spec": {"tasks": [{"name": "fit", "job": {"image": "t:1"}},
                           {"name": "held", "job": {"image": "t:1"}}]},
        "status": {
            "phase": "Running",
            "tasks": {
                "fit": {"phase": "Succeeded", "attempts": 1, "worker": "train-fit-1a on node-1"},
                "held": {"phase": "Queued", "attempts": 1,
                         "waiting": "waiting for admission by queue 'research'"},
            },
        },
    }  # fmt: skip
    lines = view.render(workflow, wide=True)
    assert "job" in lines[1]
    assert "ran on train-fit-1a on node-1" in lines[1]
    assert "waiting: waiting for admission by queue 'research'" in lines[2]
