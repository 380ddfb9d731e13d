"""Templates: sandboxed, strict, and checked for what they may reference."""

from __future__ import annotations

import pytest

from treadle.core import templating
from treadle.core.templating import TemplateError

CONTEXT = {
    "params": {"baseUrl": "http://api", "ids": [1, 2]},
    "workflow": {"name": "wf", "namespace": "ns", "uid": "u-1"},
    "tasks": {"list": {"output": {"ids": [3, 4]}}, "fetch": {"outputs": [{"n": 1}, {"n": 2}]}},
    "item": 7,
}


def test_text_templates_render_strings_with_json_for_structures() -> None:
    assert (
        templating.render_text("{{ params.baseUrl }}/users/{{ item }}", CONTEXT)
        == "http://api/users/7"
    )
    assert templating.render_text("{{ tasks.list.output }}", CONTEXT) == '{"ids":[3,4]}'


def test_value_templates_render_native_values() -> None:
    assert templating.render_value("{{ tasks.list.output.ids }}", CONTEXT) == [3, 4]
    assert templating.render_value("{{ tasks['fetch'].outputs }}", CONTEXT) == [{"n": 1}, {"n": 2}]


def test_an_unknown_name_is_an_error_when_rendering() -> None:
    with pytest.raises(TemplateError, match=r"has no attribute .missing."):
        templating.render_text("{{ params.missing }}", CONTEXT)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ params.__class__ }}",
        "{{ params['__class__'] }}",
        "{{ params | attr('__class__') }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_reaching_python_internals_is_refused_at_apply_time(source: str) -> None:
    with pytest.raises(TemplateError):
        templating.references(source)


def test_reaching_python_internals_is_refused_at_render_time_too() -> None:
    with pytest.raises(TemplateError, match="unsafe"):
        templating.render_text("{{ ''.__class__.__mro__ }}", CONTEXT)


def test_references_name_the_tasks_read() -> None:
    found = templating.references("{{ tasks.list.output.ids }} {{ tasks['fetch-user'].outputs }}")
    assert found.tasks == {"list", "fetch-user"}
    assert found.names == {"tasks"}


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ secrets.token }}", "unknown name 'secrets'"),
        ("{{ tasks }}", "must be followed by a task name"),
        ("{{ tasks[item].output }}", "name the task literally"),
        ("{{ params.x ", "template syntax error"),
    ],
)
def test_what_templates_may_not_do_is_refused_with_a_reason(source: str, problem: str) -> None:
    with pytest.raises(TemplateError, match=problem):
        templating.references(source)


def test_local_names_from_set_and_for_are_allowed() -> None:
    found = templating.references("{% for x in params.ids %}{{ x }}{% endfor %}")
    assert found.names == {"params"}


def test_a_lone_expression_naming_nothing_known_fails_instead_of_passing_undefined_on() -> None:
    with pytest.raises(templating.TemplateError, match="has no attribute 'output'"):
        templating.render_value("{{ tasks.big.output }}", {"tasks": {"big": {}}})


@pytest.mark.parametrize("name", ["items", "keys", "values", "get"])
def test_a_param_named_like_a_dict_method_is_the_param(name: str) -> None:
    """Issue #32, problem 8: `{{ params.items }}` was dict.items, so a forEach over it was
    refused as `builtin_function_or_method`."""
    context = {"params": {name: [1, 2]}}
    assert templating.render_value(f"{{{{ params.{name} }}}}", context) == [1, 2]
    assert templating.render_text(f"{{{{ params.{name} | length }}}}", context) == "2"
