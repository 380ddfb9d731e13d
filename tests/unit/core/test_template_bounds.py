"""Templates are user input evaluated in the operator: none can cost more than its bounds
(SPEC, Limits and bad input).  Issue #13, problem 1: `{{ 'a' * 10**9 }}` was admitted after the
check itself spent 4.5 s and 3 GB, then the operator grew to 5.2 GB rendering it."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from treadle.core import admission, templating


def admitted(spec: Any, *, generation: int) -> dict[str, Any]:
    """The status a newly seen workflow gets before its engine takes over."""
    status = admission.admit(spec, None, generation=generation, now=NOW, workflow={}).status
    assert status is not None
    return status.wire()


NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
CONTEXT: dict[str, Any] = {
    "params": {"x": "a" * 60_000, "n": 10**9, "ids": list(range(10_000)), "s": "abc"},
    "tasks": {"a": {"output": {"words": "hello", "big": "x" * (1 << 20)}}},
    "workflow": {"name": "wf", "namespace": "ns", "uid": "u"},
}


@pytest.fixture
def peak_bytes() -> Iterator[list[int]]:
    """The most memory Python allocated during the test, in bytes (filled in at the end)."""
    found: list[int] = []
    tracemalloc.start()
    yield found
    found.append(tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()


def problems_of(*args: str, **spec: Any) -> list[str]:
    tasks = [{"name": "a", "command": {"args": list(args)}}]
    status = admitted({"tasks": tasks, **spec}, generation=1)
    return status["message"].split("; ") if status["phase"] == "Invalid" else []


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ 'a' * 10**9 }}", "'*' would make 1000000000 characters or items (at most 65536)"),
        ("{{ 10 ** 100000 }}", "'**' would make a number over 4096 bits"),
        ("{{ 'a'|center(10**9) }}", "the center filter would make 1000000000 characters"),
        ("{{ range(10**9)|list }}", "range() of 1000000000 numbers (at most 10000)"),
        ("{{ ('ab' ~ 'cd') * 20000 }}", "'*' would make 80000 characters"),
        ("{{ '%0999999999d'|format(1) }}", "format: widths and precisions of 5 digits or more"),
    ],
)
def test_a_constant_crossing_a_bound_is_refused_at_apply_time_naming_field_and_bound(
    source: str, problem: str, peak_bytes: list[int]
) -> None:
    started = time.process_time()
    [found] = problems_of("echo", source)
    assert found.startswith("spec.tasks[0].command.args[1]: ")
    assert problem in found
    assert time.process_time() - started < 1.0


def test_checking_a_huge_constant_allocates_nothing_like_it(peak_bytes: list[int]) -> None:
    assert len(problems_of("echo", "{{ 'a' * 10**9 }}", "{{ ('x' * 60000) ~ ('y' * 6e4) }}")) == 2
    for source in ("{{ 'b' * 10**8 }}", "{{ 'c'|center(10**8) }}", "{{ [0] * 10**9 }}"):
        with pytest.raises(templating.TemplateLimit):
            templating.references(source)
    assert tracemalloc.get_traced_memory()[1] < 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "{% macro %} is not allowed"),
        ("{% for x in params.ids recursive %}{{ loop(x) }}{% endfor %}", "recursive loops"),
        ("{% set s %}{{ params.s }}{% endset %}{{ s }}", "{% set %}...{% endset %} blocks"),
        ("{% filter upper %}{{ params.s }}{% endfilter %}", "{% filter %} blocks"),
        ("{% include 'x' %}", "{% include %} is not allowed"),
        ("{{ lipsum(1000000) }}", "unknown name 'lipsum'"),
        ("{{ params.ids|random }}", "the random filter is not allowed"),
        ("{{ params.s|nosuchfilter }}", "No filter named 'nosuchfilter'"),
    ],
)
def test_constructs_that_escape_the_bounds_are_refused_at_apply_time(
    source: str, problem: str
) -> None:
    [found] = problems_of("echo", source)
    assert problem in found


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ params.x * params.n }}", "'*' would make 60000000000000 characters"),
        ("{{ params.n ** params.n }}", "'**' would make a number over 4096 bits"),
        ("{{ tasks.a.output.big }}", "renders to more than 65536 characters"),
        ("{% for i in params.ids %}{{ params.x }}{% endfor %}", "renders to more than 65536"),
        ("{{ params.x.replace('a', params.x) }}", ".replace() would make 3600060000"),
        ("{{ params.ids|join(params.x) }}", "the join filter would make 600000000"),
        ("{{ params.s|indent(params.n) }}", "the indent filter would make 1000000003"),
        ("{{ params.s.ljust(params.n) }}", "calling 'ljust' is not allowed in templates"),
        (
            "{% set ns = namespace(s='') %}{% for i in params.ids %}"
            "{% set ns.s = ns.s ~ params.x %}{% endfor %}",
            "'~' would make 120000 characters",
        ),
        (
            "{% set ns = namespace(l=[]) %}{% for i in params.ids %}"
            "{% set ns.l = ns.l + [params.x * 1] %}{% endfor %}",
            "template makes more than 4194304 characters or items in all",
        ),
        ("{{ 1 // (params.n - params.n) }}", "integer division or modulo by zero"),
        ("{{ params.s|format(1) }}", "TypeError: not all arguments converted"),
    ],
)
def test_a_runtime_value_crossing_a_bound_fails_the_render_with_the_reason(
    source: str, problem: str, peak_bytes: list[int]
) -> None:
    started = time.process_time()
    with pytest.raises(templating.TemplateError, match=None) as raised:
        templating.render_text(source, CONTEXT)
    assert problem in str(raised.value)
    assert time.process_time() - started < 1.0


def test_nested_loops_stop_at_the_step_or_cpu_budget() -> None:
    source = "{% for a in params.ids %}{% for b in params.ids %}{% endfor %}{% endfor %}"
    started = time.thread_time()
    with pytest.raises(templating.TemplateLimit, match=r"100 ms of CPU|100000 steps"):
        templating.render_text(source, CONTEXT)
    assert time.thread_time() - started < 0.5


def test_the_cpu_budget_reads_the_clock_it_is_given() -> None:
    ticks = iter(range(1000))
    budget = templating.Budget(cpu_seconds=5, cpu_clock=lambda: next(ticks))
    with pytest.raises(templating.TemplateLimit, match="more than 5000 ms of CPU"):
        templating.render_text("{% for i in params.ids %}{% endfor %}", CONTEXT, budget=budget)


def test_steps_are_bounded_whatever_the_clock_says() -> None:
    budget = templating.Budget(steps=50, cpu_clock=lambda: 0.0)
    with pytest.raises(templating.TemplateLimit, match="more than 100000 steps"):
        templating.render_text("{% for i in params.ids %}{% endfor %}", CONTEXT, budget=budget)


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ("{{ tasks.a.output.words | upper }}", "HELLO"),
        ("{{ tasks.a.output.big | length }}", "1048576"),
        ("{% for i in params.ids[:3] %}{{ i ~ '-' }}{% endfor %}", "0-1-2-"),
        ("{{ '%s/%s'|format(params.s, 2) }}", "abc/2"),
        ("{{ params.s.upper().replace('B', '-') }}", "A-C"),
        ("{{ params.ids|select('odd')|list|length }}", "5000"),
        ("{{ (params.ids|map('string')|list)[:2]|join(',') }}", "0,1"),
        ("{{ params.ids|sum }}", "49995000"),
        ("{{ range(3)|list }}", "[0,1,2]"),
        ("{{ -params.n + 2 * 3 }}", "-999999994"),
        (
            "{% set ns = namespace(n=0) %}{% for i in params.ids[:1000] %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }}",
            "499500",
        ),
    ],
)
def test_ordinary_templates_render_as_before(source: str, rendered: str) -> None:
    assert templating.references(source).names <= templating.NAMES
    assert templating.render_text(source, CONTEXT) == rendered


def test_a_value_field_takes_lists_whole_and_strings_up_to_the_bound() -> None:
    assert templating.render_value("{{ params.ids }}", CONTEXT) == list(range(10_000))
    assert templating.render_value("{{ params.x }}", CONTEXT) == CONTEXT["params"]["x"]
    with pytest.raises(templating.TemplateLimit, match="renders to more than 65536 characters"):
        templating.render_value("{{ tasks.a.output.big }}", CONTEXT)


def test_a_static_for_each_over_the_item_bound_is_refused_at_apply_time() -> None:
    task = {
        "name": "each",
        "command": {"args": ["echo", "{{ item }}"]},
        "forEach": "{{ params.n }}",
    }
    status = admitted({"tasks": [task], "params": {"n": list(range(10_001))}}, generation=1)
    assert status["message"] == "spec.tasks[0].forEach: gives 10001 items (at most 10000)"


def test_a_runtime_for_each_over_the_item_bound_dead_letters_the_task() -> None:
    """The engine holds the bound itself (a workflow reaching it around the webhook)."""
    from treadle.api.workflows import WorkflowSpec
    from treadle.core import engine

    task = {
        "name": "each",
        "command": {"args": ["echo", "{{ item }}"]},
        "forEach": "{{ params.n }}",
    }
    workflow = WorkflowSpec.model_validate({"tasks": [task], "params": {"n": list(range(10_001))}})
    who = engine.Identity(uid="u1", name="wf", namespace="ns", pool="wf-u1")
    first = engine.advance(workflow, {}, [], now=NOW, who=who)
    each = first.wire["tasks"]["each"]
    assert first.enqueue == []
    assert (each["phase"], each["error"]) == (
        "DeadLettered",
        "forEach gives 10001 items (at most 10000)",
    )


def test_a_template_of_few_costly_steps_is_stopped_at_the_first_step_past_its_cpu_time() -> None:
    """Issue #31, problem 3: the CPU bound was read every 32 steps, so 13 filter calls over a
    64 KiB string rendered for a second.  Here each step costs 30 ms of (virtual) CPU."""
    spent = [0.0]

    def clock() -> float:
        spent[0] += 0.03
        return spent[0]

    source = "{{ params.s | upper | lower | upper | lower | upper | lower | upper | lower }}"
    budget = templating.Budget(cpu_clock=clock)
    with pytest.raises(templating.TemplateLimit, match="more than 100 ms of CPU"):
        templating.render_text(source, CONTEXT, budget=budget)
    assert spent[0] <= 0.03 * 6
