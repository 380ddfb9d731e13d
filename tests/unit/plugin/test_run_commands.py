"""What `kubectl treadle submit` makes of -p, and how a run is shown while it is followed."""

from __future__ import annotations

import io
from typing import Any

import pytest

from treadle.plugin import runs, view
from treadle.plugin.output import Failure


def test_params_are_strings_unless_given_as_json() -> None:
    assert runs.parse_params(["day=2026-12-01", "n:=5", "ids:=[1, 2]", "eq=a=b"]) == {
        "day": "2026-12-01",
        "n": 5,
        "ids": [1, 2],
        "eq": "a=b",
    }
    for bad in ("novalue", "=x", "j:={nope"):
        with pytest.raises(Failure):
            runs.parse_params([bad])


def workflow(phase: str, tasks: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "etl-1", "namespace": "ns"},
        "spec": {"workflowTemplateRef": {"name": "etl"}},
        "status": {
            "phase": phase,
            "progress": "1/3",
            "message": "m",
            "tasks": tasks,
            "templateSpec": {
                "tasks": [
                    {"name": "load", "dependsOn": ["extract"]},
                    {"name": "extract"},
                ],
                "onExit": [{"name": "notify"}],
            },
            **status,
        },
    }


def test_the_view_lists_tasks_in_dag_order_with_their_story_and_exit_tasks_apart() -> None:
    shown = view.render(
        workflow(
            "Running",
            {
                "extract": {"phase": "Succeeded", "attempts": 2,
                            "startedAt": "2026-12-03T10:00:00Z",
                            "finishedAt": "2026-12-03T10:00:12Z"},
                "load": {"phase": "Retrying", "attempts": 1,
                         "error": "503 from api", "nextRetryAt": "2026-12-03T10:00:20Z"},
                "notify": {"phase": "Skipped", "reason": "ConditionFalse"},
            },
        )
    )  # fmt: skip
    assert shown == [
        "ns/etl-1   Running   1/3   m",
        "  ✔ extract                  Succeeded     2 attempts  12s",
        "  ↻ load                     Retrying      1 attempt  next at 2026-12-03T10:00:20Z  "
        "503 from api",
        "  on exit:",
        "    ⊘ notify                   Skipped       ConditionFalse",
    ]


def test_follow_prints_each_change_until_the_run_ends() -> None:
    states = iter([workflow("Running", {}), workflow("Running", {}), workflow("Succeeded", {})])
    out = io.StringIO()
    last = view.follow(lambda: next(states), out, sleep=lambda _: None)
    assert last["status"]["phase"] == "Succeeded"
    text = out.getvalue()
    assert text.count("ns/etl-1   Running") == 1  # unchanged: not printed again
    assert "ns/etl-1   Succeeded" in text
    assert "\033[" not in text  # no terminal: no colour, no redraw


def test_a_run_not_yet_admitted_shows_its_templates_tasks() -> None:
    fresh = {"metadata": {"name": "etl-2", "namespace": "ns"}, "spec": {}, "status": {}}
    template = {"tasks": [{"name": "extract"}]}
    assert view.render(fresh, template=template) == [
        "ns/etl-2   Pending",
        "  ○ extract                  Pending",
    ]
