from datetime import UTC, datetime
from typing import Any

from support.conditions import condition
from treadle.core import admission, syncadmission


def admitted(spec: Any, *, generation: int) -> dict[str, Any]:
    """The status a newly seen workflow gets before its engine takes over."""
    status = admission.admit(spec, None, generation=generation, now=NOW, workflow={}).status
    assert status is not None
    return status.wire()


NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
VALID = {
    "tasks": [
        {"name": "a", "command": {"args": ["true"]}},
        {"name": "b", "dependsOn": ["a"], "command": {"args": ["true"]}},
    ]
}


def test_a_valid_workflow_is_pending_and_not_ready_while_reconciling() -> None:
    status = admitted(VALID, generation=3)
    assert (status["phase"], status["observedGeneration"], status["progress"]) == (
        "Pending",
        3,
        "0/2",
    )
    assert condition(status, "Ready")["status"] == "False"
    assert condition(status, "Reconciling")["status"] == "True"
    assert condition(status, "Stalled")["status"] == "False"
    assert condition(status, "Ready")["observedGeneration"] == 3


def test_a_suspended_workflow_is_suspended_and_not_reconciling() -> None:
    status = admitted({**VALID, "suspend": True}, generation=1)
    assert status["phase"] == "Suspended"
    assert condition(status, "Reconciling")["status"] == "False"


def test_an_invalid_workflow_is_invalid_and_stalled_with_the_field_named() -> None:
    bad = {"tasks": [{"name": "a", "command": {"args": []}}]}
    status = admitted(bad, generation=1)
    assert status["phase"] == "Invalid"
    assert status["message"].startswith("spec.tasks[0].command.args:")
    assert condition(status, "Stalled")["status"] == "True"


def test_field_paths_read_like_kubernetes_paths() -> None:
    assert admission.field_path(("tasks", 2, "retry", "limit")) == "spec.tasks[2].retry.limit"


def problems_of(tasks: list[dict], **spec: object) -> list[str]:
    status = admitted({"tasks": tasks, **spec}, generation=1)
    return status["message"].split("; ") if status["phase"] == "Invalid" else []


def cmd(name: str, *args: str, **extra: object) -> dict:
    return {"name": name, "command": {"args": list(args) or ["true"]}, **extra}


def test_a_cyclic_workflow_is_invalid_with_the_cycle_path() -> None:
    tasks = [cmd("a", dependsOn=["c"]), cmd("b", dependsOn=["a"]), cmd("c", dependsOn=["b"])]
    assert problems_of(tasks) == ["spec.tasks: dependency cycle a -> b -> c -> a"]


def test_a_template_reading_a_non_ancestor_is_invalid() -> None:
    tasks = [cmd("a"), cmd("b", "echo", "{{ tasks.a.output }}")]
    assert problems_of(tasks) == [
        "spec.tasks[1].command.args[1]: task 'a' is not an ancestor of 'b' "
        "(add it to dependsOn, directly or through another task)"
    ]


def test_a_template_reading_a_transitive_ancestor_is_valid() -> None:
    tasks = [cmd("a"), cmd("b", dependsOn=["a"]), cmd("c", "{{ tasks.a.output }}", dependsOn=["b"])]
    assert problems_of(tasks) == []


def test_item_outside_a_for_each_task_is_invalid() -> None:
    assert problems_of([cmd("a", "echo", "{{ item }}")]) == [
        "spec.tasks[0].command.args[1]: `item` is only defined in the templates of a forEach task"
    ]


def test_a_static_for_each_must_render_to_a_list() -> None:
    tasks = [cmd("a", "{{ item }}", forEach="{{ params.one }}")]
    assert problems_of(tasks, params={"one": 5}) == [
        "spec.tasks[0].forEach: must render to a list, got int 5"
    ]
    assert problems_of(tasks, params={"one": [5]}) == []


def test_template_syntax_errors_name_the_field() -> None:
    tasks = [{"name": "a", "http": {"url": "{{ params.base "}}]
    [problem] = problems_of(tasks, params={"base": "x"})
    assert problem.startswith("spec.tasks[0].http.url: template syntax error")


def test_an_invalid_sync_job_gets_stalled_conditions_and_a_valid_one_its_parsed_spec() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    template = {"spec": {"containers": [{"name": "s", "image": "x"}]}}
    bad = syncadmission.admit_syncjob(
        {"schedule": "61 * * * *", "template": template}, None, generation=2, now=now
    )
    assert bad.runnable is None
    assert bad.message.startswith("spec.schedule:")
    assert bad.status is not None
    assert bad.status["observedGeneration"] == 2
    kinds = {c["type"]: (c["status"], c["reason"]) for c in bad.status["conditions"]}
    assert kinds["Ready"] == ("False", "Invalid")
    assert kinds["Stalled"] == ("True", "Invalid")
    good = syncadmission.admit_syncjob(
        {"schedule": "0 * * * *", "template": template}, None, generation=1, now=now
    )
    assert (good.status, good.runnable is not None) == (None, True)


def test_a_condition_may_read_only_ancestors_and_names_its_field() -> None:
    found = problems_of([cmd("a"), cmd("b", when="{{ tasks.c.output }}"), cmd("c")])
    assert found == [
        "spec.tasks[1].when: task 'c' is not an ancestor of 'b' (add it to dependsOn, directly "
        "or through another task)"
    ]
    assert problems_of([cmd("a", when="{{ item }}")]) == [
        "spec.tasks[0].when: `item` is only defined in the templates of a forEach task"
    ]
    assert problems_of([cmd("a", when="{{ nope(")])[0].startswith("spec.tasks[0].when: ")


def test_exit_tasks_depend_only_on_exit_tasks_and_may_read_any_task() -> None:
    exits = [cmd("notify", "echo", "{{ tasks.b.output }} {{ workflow.phase }}")]
    assert problems_of([cmd("a"), cmd("b")], onExit=exits) == []
    assert problems_of([cmd("a")], onExit=[cmd("notify", dependsOn=["a"])]) == [
        "spec.onExit[0].dependsOn: 'a' is a task of the DAG (exit tasks run once all of it has "
        "ended and may depend only on other exit tasks)"
    ]
    assert problems_of([cmd("a", dependsOn=["notify"])], onExit=[cmd("notify")])[0].startswith(
        "spec.tasks[0].dependsOn: unknown task 'notify'"
    )
    assert problems_of(
        [cmd("a")], onExit=[cmd("x", "{{ tasks.y.output }}"), cmd("y", dependsOn=["x"])]
    ) == [
        "spec.onExit[0].command.args[0]: task 'y' is not an ancestor of 'x' (add it to "
        "dependsOn, directly or through another task)"
    ]


def test_exit_task_names_are_unique_with_the_dags_and_bounded() -> None:
    assert problems_of([cmd("a")], onExit=[cmd("a")]) == [
        "spec: onExit[0].name: duplicate task name 'a'"
    ]
    many = [cmd(f"e{i}") for i in range(21)]
    assert problems_of([cmd("a")], onExit=many)[0].startswith("spec.onExit: List should have")


def test_retry_rules_are_checked_at_apply_time() -> None:
    bad = cmd("a", retry={"retryOn": {"httpStatus": [429, "6xx"], "exitCodes": [0]}})
    assert problems_of([bad]) == [
        "spec.tasks[0].retry.retryOn.httpStatus: entry 1: '6xx' is neither a status code nor a "
        "class like 5xx",
        "spec.tasks[0].retry.retryOn.exitCodes[0]: Input should be greater than or equal to 1",
    ]


def test_a_shutdown_set_before_status_shows_the_start_goes_on_with_the_same_run() -> None:
    """The first attempts may be out before status says so (writes are paced): an edit of a
    mutable field then must not start the run again (its first attempt would run twice)."""
    spec = {"tasks": [cmd("a")]}
    first = admission.admit(spec, {}, generation=1, now=NOW, workflow={})
    assert first.status is not None
    stopped = admission.admit(
        {**spec, "shutdown": "Stop"}, first.status.wire(), generation=2, now=NOW, workflow={}
    )
    assert stopped.restarted is False
    assert stopped.status is not None
    assert stopped.status.run_generation == 1  # the same run
    assert stopped.runnable is not None
    assert stopped.runnable.shutdown == "Stop"


def test_a_sync_jobs_status_that_does_not_parse_loses_only_its_bad_fields() -> None:
    """A status written by another version (or by hand) must not make the job unadmittable."""
    from treadle.core import syncs

    raw = {
        "lastOutcome": "Exploded",
        "consecutiveFailures": 2,
        "activeRuns": [{"name": "r"}],
        "currentSlot": "2026-12-07T10:00:00Z",
    }
    status = syncs.read_status(raw)
    assert (status.consecutive_failures, status.current_slot) == (2, "2026-12-07T10:00:00Z")
    assert (status.last_outcome, status.active_runs) == (None, [])
    assert syncs.read_status(None) == syncs.read_status({})
