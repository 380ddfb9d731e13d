"""Whatever a tenant writes (a Redis entry through its pool's user, a task's output, a manifest,
a template) is refused or set aside, never a crash, a stall or a value status cannot hold
(issue #31: the adversarial suite's properties)."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from treadle.core import admission, jsonvalues, templating
from treadle.core.messages import MessageError, TaskMessage, TaskResult
from treadle.plugin import terminal

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "\ud800",
            "\x1b[2J",
            "[" * 3000,
            '{"a":' * 2000,
            "NaN",
            "Infinity",
            "-Infinity",
            "1e999999",
            "\x00",
            "{{ '" + "a" * 70_000 + "' }}",
            "{% for i in range(10**9) %}x{% endfor %}",
            "{{ 'x' * 10**9 }}",
            "{{ (1,) * 10**9 }}",
            "{{ lipsum(10**6) }}",
            "{{ ''.__class__.__mro__ }}",
            "{{ params.s | urlize | urlize | urlize }}",
        ]
    ),
)
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | HOSTILE_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(HOSTILE_TEXT, children, max_size=4)
    ),
    max_leaves=30,
)
CONTEXT = {"params": {"s": "http://x.test/a " * 4000}, "workflow": {"name": "wf"}, "tasks": {}}


def status_can_hold(value: Any) -> None:
    json.dumps(value, allow_nan=False).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["key", "uid", "result", "x"]), HOSTILE_TEXT, max_size=4))
def test_any_results_stream_entry_is_a_result_status_can_hold_or_refused(
    fields: dict[str, str],
) -> None:
    try:
        result = TaskResult.decode(fields)
    except MessageError:
        return
    status_can_hold(result.__dict__)


@settings(max_examples=300, deadline=None)
@given(
    output=JSONISH,
    error=st.none() | HOSTILE_TEXT,
    details=st.dictionaries(HOSTILE_TEXT, JSONISH, max_size=3),
)
def test_any_result_a_worker_user_can_forge_decodes_to_one_status_can_hold_or_is_refused(
    output: Any, error: str | None, details: dict[str, Any]
) -> None:
    body = TaskResult("u", "ns/wf", "t", None, 1, "succeeded").__dict__ | {
        "output": output,
        "error": error,
        "details": details,
    }
    try:
        encoded = json.dumps(body)
    except (ValueError, RecursionError):
        return
    try:
        result = TaskResult.decode({"key": "u/t/-", "uid": "u", "result": encoded})
    except MessageError:
        return
    status_can_hold(result.__dict__)
    if jsonvalues.fit(output) is not None:
        assert result.outcome == "failed"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT, max_size=8))
def test_any_task_stream_entry_is_a_message_or_refused(fields: dict[str, str]) -> None:
    with contextlib.suppress(MessageError):
        TaskMessage.decode(fields)


@settings(max_examples=500, deadline=None)
@given(HOSTILE_TEXT)
def test_reading_any_text_as_json_gives_a_value_status_can_hold_or_value_error(text: str) -> None:
    try:
        value = jsonvalues.loads(text)
    except ValueError:
        return
    status_can_hold(value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HOSTILE_TEXT)
def test_any_template_renders_or_is_refused_within_its_cpu_bound(source: str) -> None:
    started = time.thread_time()
    try:
        rendered = templating.render_text(source, CONTEXT)
    except templating.TemplateError:
        rendered = ""
    assert time.thread_time() - started < 1.0
    assert len(rendered) <= templating.MAX_OUTPUT_CHARS


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSONISH, HOSTILE_TEXT)
def test_any_manifest_is_admitted_or_refused_naming_a_field_never_raising(
    params: Any, template: str
) -> None:
    spec = {
        "params": params,
        "tasks": [
            {"name": "a", "command": {"args": ["echo", template]}},
            {"name": "b", "dependsOn": ["a"], "forEach": template, "command": {"args": ["x"]}},
        ],
        "workers": {"resources": {"requests": {"cpu": template}}},
    }
    started = time.thread_time()
    parsed, problems = admission.admit_workflow(spec, {"name": "wf"})
    assert time.thread_time() - started < 3.0
    assert (parsed is None) == bool(problems)
    for problem in problems:
        assert problem.startswith("spec"), problem


@settings(max_examples=300, deadline=None)
@given(JSONISH)
def test_nothing_shown_by_the_plugin_can_drive_a_terminal(value: Any) -> None:
    shown = json.dumps(terminal.safe_strings(value), ensure_ascii=False, allow_nan=True)
    for text in _strings(terminal.safe_strings(value)):
        assert not any(ord(c) < 0x20 and c not in "\t\n" for c in text), shown
        assert not any(0x7F <= ord(c) <= 0x9F for c in text), shown


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for child in value for s in _strings(child)]
    return []
