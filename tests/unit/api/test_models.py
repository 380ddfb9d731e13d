"""The models refuse what the CRD refuses, with errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from treadle.api import pools, syncjobs, workflows
from treadle.core import admission

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def spec(*tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"tasks": list(tasks), **extra}


def echo(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": {"args": ["echo", name]}, **extra}


def test_two_tasks_with_the_same_name_are_refused_naming_the_field() -> None:
    _, problems = admission.parse(workflows.WorkflowSpec, spec(echo("a"), echo("a")))
    assert problems == ["spec: tasks[1].name: duplicate task name 'a'"]


def test_a_task_with_two_actions_is_refused_naming_the_task() -> None:
    task = echo("a", http={"url": "http://x"})
    _, problems = admission.parse(workflows.WorkflowSpec, spec(task))
    assert problems == [
        "spec.tasks[0]: a task needs exactly one action: http, command, python or job"
    ]


def test_a_negative_retry_limit_is_refused_naming_the_field() -> None:
    _, problems = admission.parse(
        workflows.WorkflowSpec, spec(echo("a"), defaults={"retry": {"limit": -1}})
    )
    assert problems == ["spec.defaults.retry.limit: Input should be greater than or equal to 0"]


def test_unknown_fields_are_refused() -> None:
    _, problems = admission.parse(workflows.WorkflowSpec, spec(echo("a", dependOn=["b"])))
    assert problems == ["spec.tasks[0].dependOn: Extra inputs are not permitted"]


def test_defaults_fill_in_what_the_user_left_out() -> None:
    parsed, _ = admission.parse(workflows.WorkflowSpec, spec(echo("a")))
    assert parsed is not None
    assert (parsed.concurrency, parsed.suspend, parsed.workers.replicas) == (8, False, 1)


def test_a_header_takes_a_value_or_a_secret_not_both() -> None:
    header = {"name": "X", "value": "v", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    task = {"name": "a", "http": {"url": "http://x", "headers": [header]}}
    _, problems = admission.parse(workflows.WorkflowSpec, spec(task))
    assert problems == ["spec.tasks[0].http.headers[0]: set exactly one of value or valueFrom"]


def test_skipped_retry_bounds_must_be_ordered() -> None:
    job = {
        "schedule": "* * * * *",
        "template": {"spec": {}},
        "skippedRetry": {"minSeconds": 60, "maxSeconds": 30},
    }
    _, problems = admission.parse(syncjobs.SyncJobSpec, job)
    assert problems == ["spec.skippedRetry: minSeconds must not exceed maxSeconds"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_parses(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        model = {
            "Workflow": workflows.WorkflowSpec,
            "WorkflowTemplate": workflows.WorkflowTemplateSpec,
            "SyncJob": syncjobs.SyncJobSpec,
            "WorkerPool": pools.WorkerPoolSpec,
        }[document["kind"]]
        _, problems = admission.parse(model, document["spec"])
        assert problems == []


names = st.from_regex(workflows.TASK_NAME_PATTERN, fullmatch=True).filter(lambda n: len(n) <= 63)


@given(st.lists(names, min_size=1, max_size=20))
def test_a_task_list_is_accepted_exactly_when_its_names_are_unique(task_names: list[str]) -> None:
    _, problems = admission.parse(workflows.WorkflowSpec, spec(*(echo(n) for n in task_names)))
    unique = len(set(task_names)) == len(task_names)
    assert (problems == []) == unique
    if not unique:
        assert "duplicate task name" in problems[0]
