"""Reading a field of a task's output that was text, not JSON, says so (#32: it said
`'str object' has no attribute 'rows'`); the text itself stays usable."""

from __future__ import annotations

from support.steps import cmd, ok, spec, step


def test_a_field_of_a_text_output_fails_saying_the_output_was_text_not_json() -> None:
    workflow = spec(
        cmd("fetch"),
        cmd("count", "echo", "{{ tasks.fetch.output.rows }}", dependsOn=["fetch"]),
        cmd("first", "echo", "{{ tasks.fetch.output['rows'] }}", dependsOn=["fetch"]),
    )
    first = step(workflow, {})
    second = step(workflow, first.status, [ok(first.enqueue[0], "42 rows")])
    for task in ("count", "first"):
        entry = second.wire["tasks"][task]
        assert entry["phase"] == "DeadLettered"
        assert "tasks.fetch.output is text, not JSON (it printed '42 rows')" in entry["error"]
        assert "has no field 'rows'" in entry["error"]


def test_a_text_output_is_still_text_to_filters_methods_and_indexes() -> None:
    template = "{{ tasks.fetch.output | upper }} {{ tasks.fetch.output.split()[0] }} "
    workflow = spec(
        cmd("fetch"),
        cmd("use", "echo", template + "{{ tasks.fetch.output[0] }}", dependsOn=["fetch"]),
    )
    first = step(workflow, {})
    second = step(workflow, first.status, [ok(first.enqueue[0], "42 rows")])
    [use] = second.enqueue
    assert use.action["command"]["args"] == ["echo", "42 ROWS 42 4"]
