"""Every action kind has every part, and the registry is the only place kinds are told apart."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from treadle.api import workflows
from treadle.core import actions
from treadle.core.actions import ActionKind
from treadle.worker import runners

SAMPLES = {
    "command": {"args": ["echo", "{{ params.x }}"]},
    "python": {"callable": "support.tasks:add", "kwargs": {"a": "{{ params.x }}", "b": 2}},
    "job": {
        "image": "ghcr.io/acme/etl:{{ params.x }}",
        "command": ["python", "-m", "etl"],
        "args": ["--rows", "{{ params.x }}"],
        "env": [{"name": "MODE", "value": "{{ params.x }}"}, {"name": "N", "valueFrom": {}}],
        "workingDir": "/data/{{ params.x }}",
    },
    "http": {
        "url": "https://api.example/{{ params.x }}",
        "headers": [{"name": "X", "value": "{{ params.x }}"}],
        "body": {"q": "{{ params.x }}"},
    },
}
CONTEXT = {"params": {"x": "7"}}


def test_the_registry_has_a_kind_for_every_action_field_of_a_task_and_no_other() -> None:
    assert set(actions.KINDS) == set(workflows.ACTIONS)
    assert set(SAMPLES) == set(workflows.ACTIONS)  # this test samples every kind
    for name in workflows.ACTIONS:
        assert name in workflows.Task.model_fields


@pytest.mark.parametrize("name", sorted(actions.KINDS))
def test_a_kind_names_every_template_and_renders_them_all(name: str) -> None:
    task = workflows.Task.model_validate({"name": "t", name: SAMPLES[name]})
    kind, _ = actions.of(task)
    assert isinstance(kind, ActionKind)
    assert kind.name == name
    paths = [path for path, source in actions.templates(task, "spec.tasks[0]")]
    assert paths
    assert all(path.startswith(f"spec.tasks[0].{name}.") for path in paths)
    rendered = actions.render(task, CONTEXT)
    assert list(rendered) == [name]
    assert "{{" not in str(rendered)
    assert "7" in str(rendered)


@pytest.mark.parametrize("name", sorted(actions.KINDS))
def test_a_kind_has_a_runner_the_worker_can_call(name: str) -> None:
    run = runners.runner(name)
    assert inspect.iscoroutinefunction(run)
    assert list(inspect.signature(run).parameters) == ["spec", "attempt"]


def test_an_unknown_kind_fails_its_attempt_with_the_reason() -> None:
    with pytest.raises(runners.ActionFailed, match="unknown action 'grpc'"):
        runners.runner("grpc")


def test_targets_are_scheme_host_port_for_http_and_the_task_otherwise() -> None:
    assert (
        actions.target({"http": {"url": "https://api.example/a"}}, "t") == "https://api.example:443"
    )
    assert actions.target({"command": {"args": ["true"]}}, "merge") == "task:merge"
    assert actions.target({"junk": 1}, "merge") == "task:merge"


def test_only_the_registry_and_the_kinds_know_the_kinds_by_name() -> None:
    """No `task.http`, `task.command`, `== "python"` outside treadle.core.actions (and the
    models): adding a kind touches its own module and the registry."""
    package = Path(actions.__file__).parents[2]
    offenders = []
    for path in package.rglob("*.py"):
        if path.parent.name == "actions" and path.parent.parent.name == "core":
            continue
        if path.parts[-2:] == ("api", "workflows.py"):
            continue
        text = path.read_text()
        for name in workflows.ACTIONS:
            for pattern in (f"task.{name}", f'== "{name}"', f"kind == '{name}'"):
                if pattern in text:
                    offenders.append(f"{path.relative_to(package)}: {pattern}")
    assert offenders == []
