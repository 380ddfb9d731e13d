"""What the UI's page is given to draw: a workflow's graph, list rows, a sync job's page."""

from __future__ import annotations

from typing import Any

from treadle.plugin import pages


def workflow(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "etl", "namespace": "data", "creationTimestamp": "2026-12-03T10:00:00Z"
        },
        "spec": {
            "tasks": [
                {"name": "load", "dependsOn": ["fetch"], "command": {"args": ["true"]}},
                {"name": "fetch", "http": {"url": "https://example.com"}},
                {"name": "each", "dependsOn": ["fetch"], "forEach": "{{ [1] }}",
                 "python": {"callable": "m:f"}},
            ],
            "onExit": [{"name": "notify", "command": {"args": ["true"]}}],
        },
        "status": status,
    }  # fmt: skip


def test_the_graph_has_every_task_in_dag_order_and_an_edge_per_dependency() -> None:
    found = pages.graph(workflow())
    assert [n["id"] for n in found["nodes"]] == ["fetch", "load", "each", "notify"]
    assert found["edges"] == [["fetch", "load"], ["fetch", "each"]]
    assert [n["exit"] for n in found["nodes"]] == [False, False, False, True]
    assert [n["action"] for n in found["nodes"]] == ["http", "command", "python", "command"]
    assert all(n["phase"] == "Pending" for n in found["nodes"])


def test_nodes_carry_their_phase_and_counts() -> None:
    found = pages.graph(
        workflow(
            tasks={
                "fetch": {"phase": "Succeeded", "attempts": 2},
                "each": {"phase": "Running", "items": 10, "succeeded": 4, "deadLettered": 1},
            }
        )
    )
    nodes = {n["id"]: n for n in found["nodes"]}
    assert (nodes["fetch"]["phase"], nodes["fetch"]["detail"]) == ("Succeeded", "2 attempts")
    assert nodes["each"]["detail"] == "4/10 items, 1 dead"
    assert nodes["each"]["forEach"] is True


def test_a_templated_run_is_drawn_from_the_template_copy_its_status_holds() -> None:
    run = {
        "metadata": {"name": "r", "namespace": "d"},
        "spec": {"workflowTemplateRef": {"name": "t"}},
        "status": {"templateSpec": {"tasks": [{"name": "only", "command": {"args": ["x"]}}]}},
    }
    assert [n["id"] for n in pages.graph(run)["nodes"]] == ["only"]


def test_a_broken_graph_is_drawn_as_written() -> None:
    cyclic = {
        "metadata": {},
        "spec": {"tasks": [{"name": "a", "dependsOn": ["b"]}, {"name": "b", "dependsOn": ["a"]}]},
    }
    found = pages.graph(cyclic)
    assert [n["id"] for n in found["nodes"]] == ["a", "b"]
    assert found["edges"] == [["b", "a"], ["a", "b"]]


def test_a_workflow_row_says_how_it_stands() -> None:
    row = pages.workflow_row(
        workflow(phase="Failed", progress="2/4", message="dead-lettered: load",
                 startedAt="2026-12-03T10:00:00Z", finishedAt="2026-12-03T10:01:05Z")
    )  # fmt: skip
    assert (row["name"], row["phase"], row["progress"], row["duration"]) == (
        "etl",
        "Failed",
        "2/4",
        "1m5s",
    )


def test_a_sync_job_page_lists_its_runs_newest_first_with_their_slots() -> None:
    job = {
        "metadata": {"name": "nightly", "namespace": "d", "managedFields": [{"x": 1}]},
        "spec": {"schedule": "0 3 * * *", "tables": ["orders"]},
        "status": {"lastOutcome": "Succeeded", "succeededSlots": "a/b"},
    }
    runs = [
        {"kind": "Pod", "metadata": {"name": "old", "creationTimestamp": "2026-12-01T03:00:00Z",
                                     "annotations": {"treadle.dev/slot": "2026-12-01T03:00:00Z"}},
         "status": {"phase": "Succeeded"}},
        {"kind": "Workflow",
         "metadata": {"name": "new", "creationTimestamp": "2026-12-02T03:00:00Z"}},
    ]  # fmt: skip
    page = pages.syncjob_page(job, runs, [])
    assert [r["name"] for r in page["runs"]] == ["new", "old"]
    assert page["runs"][1]["slot"] == "2026-12-01T03:00:00Z"
    assert page["runs"][0]["phase"] == "Pending"
    assert "managedFields" not in page["job"]["metadata"]
    assert ["Last outcome", "Succeeded"] in page["rows"]
    row = pages.syncjob_row(job)
    assert (row["schedule"], row["lastOutcome"], row["running"]) == ("0 3 * * *", "Succeeded", 0)
