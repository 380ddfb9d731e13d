"""Workflows that run a WorkflowTemplate: the spec they run, frozen at admission."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from treadle.core import admission, templates

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
ETL = {
    "params": {"day": "today", "region": "eu"},
    "concurrency": 4,
    "tasks": [{"name": "load", "command": {"args": ["echo", "{{ params.day }}"]}}],
}
CONTEXT = {"name": "etl-1", "namespace": "ns", "uid": "u1"}


def run(spec: dict[str, Any], status: dict[str, Any] | None = None, *, generation: int = 1,
        template: dict[str, Any] | None = ETL) -> admission.Admission:  # fmt: skip
    return admission.admit(
        spec, status or {}, generation=generation, now=T0, workflow=CONTEXT, template=template
    )


def test_params_merge_over_the_templates_and_the_workflows_fields_win() -> None:
    spec = {
        "workflowTemplateRef": {"name": "etl"},
        "params": {"day": "2026-12-01"},
        "concurrency": 9,
    }
    merged = templates.effective(spec, ETL)
    assert merged["params"] == {"day": "2026-12-01", "region": "eu"}
    assert merged["concurrency"] == 9
    assert merged["tasks"] == ETL["tasks"]
    assert "workflowTemplateRef" not in merged


def test_a_new_run_freezes_the_template_and_runs_its_tasks() -> None:
    verdict = run({"workflowTemplateRef": {"name": "etl"}, "params": {"day": "d1"}})
    assert verdict.runnable is not None
    assert [task.name for task in verdict.runnable.tasks] == ["load"]
    assert verdict.runnable.params == {"day": "d1", "region": "eu"}
    assert verdict.status is not None
    assert verdict.status.template_spec == ETL
    assert verdict.status.progress == "0/1"


def test_a_run_under_way_keeps_its_copy_whatever_the_template_became() -> None:
    spec = {"workflowTemplateRef": {"name": "etl"}}
    first = run(spec)
    assert first.status is not None
    started = first.status.wire() | {"startedAt": "2026-12-03T08:00:01Z", "phase": "Running"}
    assert admission.template_wanted(spec, started, 1) is None
    edited = {**ETL, "tasks": [{"name": "other", "command": {"args": ["true"]}}]}
    again = run(spec, started, template=edited)  # a resume: the operator restarted
    assert again.runnable is not None
    assert [task.name for task in again.runnable.tasks] == ["load"]
    suspended = run({**spec, "suspend": True}, started, generation=2, template=edited)
    assert suspended.runnable is not None
    assert [task.name for task in suspended.runnable.tasks] == ["load"]


def test_a_missing_template_or_an_unknown_parameter_makes_the_workflow_invalid() -> None:
    spec = {"workflowTemplateRef": {"name": "etl"}}
    assert admission.template_wanted(spec, {}, 1) == "etl"
    missing = run(spec, template=None)
    assert missing.runnable is None
    assert missing.status is not None
    assert missing.status.phase == "Invalid"
    assert missing.status.message == (
        "spec.workflowTemplateRef.name: WorkflowTemplate 'etl' does not exist in this namespace"
    )
    typo = run({**spec, "params": {"dya": "x"}})
    assert typo.status is not None
    assert typo.status.message == (
        "spec.params.dya: WorkflowTemplate 'etl' has no parameter 'dya' (its parameters: "
        "day, region)"
    )


def test_a_workflow_with_a_template_sets_no_tasks_and_a_template_names_no_template() -> None:
    both = admission.admit_workflow(
        {"workflowTemplateRef": {"name": "etl"}, "tasks": ETL["tasks"]}, CONTEXT, ETL
    )
    assert both[1] == ["spec.tasks: comes from WorkflowTemplate 'etl' (leave it unset)"]
    assert admission.admit_template({"workflowTemplateRef": {"name": "x"}, **ETL}) == [
        "spec: workflowTemplateRef: a WorkflowTemplate holds tasks itself; it cannot refer to "
        "another"
    ]
    assert admission.admit_template({"tasks": []})[0].startswith("spec: tasks: a workflow needs")
    cyclic = {"tasks": [{"name": "a", "dependsOn": ["a"], "command": {"args": ["true"]}}]}
    assert admission.admit_template(cyclic) == [
        "spec.tasks[0].dependsOn: task 'a' depends on itself"
    ]


def test_a_template_too_large_to_freeze_is_refused() -> None:
    huge = {**ETL, "params": {"blob": "x" * (templates.TEMPLATE_SPEC_LIMIT_BYTES + 1)}}
    problems = templates.problems({"workflowTemplateRef": {"name": "etl"}}, huge, "etl")
    assert problems[0].startswith("spec.workflowTemplateRef: WorkflowTemplate 'etl' is 96 KiB")
