"""The engine's transitions, on fixed times, with results fed in by hand."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.conditions import condition
from support.steps import STORED, T0, WHO, cmd, failed, ok, spec, step
from treadle.api.workflows import WorkflowSpec
from treadle.core import engine, timestamps


@pytest.fixture(autouse=True)
def _empty_store() -> None:
    STORED.clear()


def test_a_chain_runs_in_dependency_order_and_passes_outputs_along() -> None:
    workflow = spec(
        cmd("say", "echo"),
        cmd("shout", "echo", "{{ tasks.say.output.words | upper }}", dependsOn=["say"]),
    )
    first = step(workflow, {})
    assert [(m.task, m.attempt) for m in first.enqueue] == [("say", 1)]
    assert (first.wire["phase"], first.wire["progress"]) == ("Running", "0/2")
    second = step(workflow, first.status, [ok(first.enqueue[0], {"words": "hi"})])
    assert second.enqueue[0].action == {"command": {"args": ["echo", "HI"]}}
    third = step(workflow, second.status, [ok(second.enqueue[0], "HI")])
    assert (third.wire["phase"], third.wire["progress"], third.enqueue) == (
        "Succeeded",
        "2/2",
        [],
    )
    ready = condition(third.wire, "Ready")
    assert ready["status"] == "True"


def test_independent_tasks_run_in_parallel_up_to_the_concurrency() -> None:
    workflow = spec(*(cmd(f"t{i}") for i in range(5)), concurrency=2)
    first = step(workflow, {})
    assert [m.task for m in first.enqueue] == ["t0", "t1"]
    second = step(workflow, first.status, [ok(first.enqueue[0])])
    assert [m.task for m in second.enqueue] == ["t2"]


def test_for_each_fans_out_and_the_fan_in_sees_every_output_in_item_order() -> None:
    workflow = spec(
        cmd("list"),
        cmd(
            "square",
            "echo",
            "{{ item }}",
            dependsOn=["list"],
            forEach="{{ tasks.list.output.ids }}",
        ),
        {
            "name": "total",
            "dependsOn": ["square"],
            "python": {"callable": "m:f", "kwargs": {"values": "{{ tasks.square.outputs }}"}},
        },
    )
    first = step(workflow, {})
    second = step(workflow, first.status, [ok(first.enqueue[0], {"ids": [3, 1, 2]})])
    assert [(m.task, m.item, m.action["command"]["args"][1]) for m in second.enqueue] == [
        ("square", 0, "3"),
        ("square", 1, "1"),
        ("square", 2, "2"),
    ]
    assert second.enqueue[0].key == "u1/square/0"
    # Children finish out of order; the fan-in sees outputs in item order.
    third = step(workflow, second.status, [ok(second.enqueue[2], 4), ok(second.enqueue[0], 9)])
    assert third.wire["tasks"]["square"]["doneItems"] == "0,2"
    fourth = step(workflow, third.status, [ok(second.enqueue[1], 1)])
    [fan_in] = fourth.enqueue
    assert fan_in.action["python"]["kwargs"] == {"values": [9, 1, 4]}
    assert fourth.wire["progress"] == "4/5"


def test_a_failure_is_retried_with_growing_delays_then_dead_lettered_and_downstream_skipped() -> (
    None
):
    retry = {"limit": 2, "backoff": {"durationSeconds": 10, "factor": 2, "jitter": 0}}
    workflow = spec(cmd("flaky", retry=retry), cmd("after", dependsOn=["flaky"]))
    current = step(workflow, {})
    attempt = current.enqueue[0]
    now = T0
    delays = []
    for _ in range(2):
        current = step(workflow, current.status, [failed(attempt)], now=now)
        entry = current.wire["tasks"]["flaky"]
        assert entry["phase"] == "Retrying"
        due = datetime.strptime(entry["nextRetryAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        delays.append((due - now).total_seconds())
        assert current.wake_at == due
        assert step(workflow, current.status, now=due - timedelta(seconds=1)).enqueue == []
        current = step(workflow, current.status, now=due)
        now = due
        [attempt] = current.enqueue
    assert delays == [10, 20]
    assert attempt.attempt == 3
    final = step(workflow, current.status, [failed(attempt, "503 from api")], now=now)
    assert final.wire["tasks"]["flaky"]["phase"] == "DeadLettered"
    assert final.wire["tasks"]["after"]["phase"] == "Skipped"
    assert final.wire["phase"] == "Failed"
    assert final.wire["deadLetters"] == [
        {"task": "flaky", "attempts": 3, "error": "503 from api", "at": timestamps.text(now)}
    ]
    stalled = condition(final.wire, "Stalled")
    assert stalled["status"] == "True"


def test_a_duplicate_or_stale_result_changes_nothing() -> None:
    workflow = spec(cmd("a"), cmd("b", dependsOn=["a"]))
    first = step(workflow, {})
    second = step(workflow, first.status, [ok(first.enqueue[0], 1)])
    again = step(workflow, second.status, [ok(first.enqueue[0], 2)])
    assert again.enqueue == []
    assert again.wire["tasks"]["a"]["output"] == 1


def test_a_child_that_exhausts_its_retries_dead_letters_its_for_each_task() -> None:
    workflow = spec(
        cmd("each", "echo", "{{ item }}", forEach="{{ params.ids }}", retry={"limit": 0}),
        params={"ids": [1, 2]},
    )
    first = step(workflow, {})
    second = step(workflow, first.status, [ok(first.enqueue[0]), failed(first.enqueue[1])])
    entry = second.wire["tasks"]["each"]
    assert (entry["phase"], entry["deadItems"], entry["succeeded"]) == ("DeadLettered", "1", 1)
    assert second.wire["deadLetters"][0]["item"] == 1


def test_an_empty_for_each_succeeds_at_once() -> None:
    workflow = spec(cmd("each", "{{ item }}", forEach="{{ params.ids }}"), params={"ids": []})
    assert step(workflow, {}).status.phase == "Succeeded"


def test_a_template_that_fails_to_render_dead_letters_the_task_without_retries() -> None:
    workflow = spec(cmd("a"), cmd("b", "{{ tasks.a.output.missing }}", dependsOn=["a"]))
    first = step(workflow, {})
    second = step(workflow, first.status, [ok(first.enqueue[0], {})])
    assert second.wire["tasks"]["b"]["phase"] == "DeadLettered"
    assert second.wire["tasks"]["b"]["error"].startswith("template:")


def test_the_active_deadline_fails_the_workflow_and_skips_what_is_left() -> None:
    workflow = spec(cmd("slow"), cmd("later", dependsOn=["slow"]), activeDeadlineSeconds=60)
    first = step(workflow, {})
    assert first.wake_at == T0 + timedelta(seconds=60)
    late = step(workflow, first.status, now=T0 + timedelta(seconds=61))
    assert late.wire["phase"] == "Failed"
    assert "activeDeadlineSeconds" in late.wire["message"]
    assert {e["phase"] for e in late.wire["tasks"].values()} == {"Skipped"}


def test_a_suspended_workflow_starts_nothing() -> None:
    current = step(spec(cmd("a"), suspend=True), {})
    assert (current.wire["phase"], current.enqueue) == ("Suspended", [])


def test_guards_and_timeouts_travel_with_the_attempt() -> None:
    workflow = spec(
        {"name": "call", "http": {"url": "http://{{ params.host }}/x"}, "timeoutSeconds": 5},
        params={"host": "api"},
        defaults={
            "circuitBreaker": {"failureThreshold": 3, "openSeconds": 10},
            "rateLimit": {"perSecond": 5, "burst": 2},
        },
    )
    [message] = step(workflow, {}).enqueue
    assert message.action["http"]["url"] == "http://api/x"
    assert message.timeout_seconds == 5
    assert message.guards == {
        "circuitBreaker": {"failureThreshold": 3, "openSeconds": 10.0},
        "rateLimit": {"perSecond": 5.0, "burst": 2},
    }


def test_in_flight_attempts_can_be_rebuilt_from_status_alone() -> None:
    workflow = spec(
        cmd("each", "echo", "{{ item }}", forEach="{{ params.ids }}"),
        params={"ids": [5, 6, 7]},
        concurrency=2,
    )
    first = step(workflow, {})
    again = engine.requeue_in_flight(workflow, first.status, now=T0, who=WHO)
    assert [(m.item, m.action) for m in again] == [(m.item, m.action) for m in first.enqueue]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=8),
    st.randoms(use_true_random=False),
)
def test_a_fan_out_finishes_with_every_child_run_once_whatever_the_order(
    children: int, concurrency: int, shuffle: random.Random
) -> None:
    workflow = spec(
        cmd("each", "echo", "{{ item }}", forEach="{{ params.ids }}"),
        params={"ids": list(range(children))},
        concurrency=concurrency,
    )
    current = step(workflow, {})
    pending = list(current.enqueue)
    seen: list[int] = []
    while pending:
        assert len(pending) <= concurrency
        shuffle.shuffle(pending)
        done, pending = pending[:1], pending[1:]
        seen += [m.item for m in done]
        current = step(workflow, current.status, [ok(m, m.item) for m in done])
        pending += current.enqueue
    assert sorted(seen) == list(range(children))
    assert current.wire["phase"] == "Succeeded"
    assert current.wire["progress"] == f"{children}/{children}"


def dead_lettered(workflow: WorkflowSpec) -> engine.Step:
    """Runs `workflow` failing every attempt until nothing more can run."""
    current = step(workflow, {})
    now = T0
    while not current.finished:
        results = [failed(message) for message in current.enqueue]
        if current.wake_at is not None and not results:
            now = current.wake_at
        current = step(workflow, current.status, results, now=now)
    return current


def test_a_manual_retry_revives_a_failed_workflow_with_a_fresh_retry_budget() -> None:
    retry = {"limit": 1, "backoff": {"durationSeconds": 5, "jitter": 0}}
    workflow = spec(cmd("flaky", retry=retry), cmd("after", dependsOn=["flaky"]))
    failed_run = dead_lettered(workflow)
    assert failed_run.wire["tasks"]["flaky"]["attempts"] == 2
    later = T0 + timedelta(hours=1)
    before = failed_run.wire
    status, revived = engine.revive(workflow, failed_run.status, "all", now=later)
    assert failed_run.wire == before  # revive works on its own copy
    assert revived == ["flaky"]
    assert (status.phase, status.dead_letters) == ("Running", [])
    assert status.wire()["tasks"]["after"] == {"phase": "Pending"}
    again = step(workflow, status, now=later)
    [attempt] = again.enqueue
    assert (attempt.task, attempt.attempt) == ("flaky", 3)
    assert "finishedAt" not in again.wire
    # The budget counts from the retry: one more failure is retried, not dead-lettered.
    retried = step(workflow, again.status, [failed(attempt)], now=later)
    assert retried.wire["tasks"]["flaky"]["phase"] == "Retrying"
    fourth = step(workflow, retried.status, now=retried.wake_at)
    done = step(workflow, fourth.status, [ok(fourth.enqueue[0], "fine")], now=retried.wake_at)
    last = step(workflow, done.status, [ok(m) for m in done.enqueue], now=retried.wake_at)
    assert last.wire["phase"] == "Succeeded"
    assert condition(last.wire, "Ready")["status"] == "True"


def test_a_manual_retry_of_a_for_each_requeues_only_its_dead_children() -> None:
    workflow = spec(
        {
            "name": "each",
            "python": {"callable": "m:f", "kwargs": {"id": "{{ item }}"}},
            "forEach": "{{ params.ids }}",
            "retry": {"limit": 0},
        },
        cmd("merge", dependsOn=["each"]),
        params={"ids": [10, 20, 30]},
    )
    first = step(workflow, {})
    results = [ok(first.enqueue[0], "a"), failed(first.enqueue[1]), ok(first.enqueue[2], "c")]
    failed_run = step(workflow, first.status, results)
    assert failed_run.wire["phase"] == "Failed"
    status, revived = engine.revive(workflow, failed_run.status, "each", now=T0)
    assert revived == ["each[1]"]
    again = step(workflow, status)
    [child] = again.enqueue
    assert (child.item, child.attempt, child.action["python"]["kwargs"]) == (1, 2, {"id": 20})
    fan_in = step(workflow, again.status, [ok(child, "b")])
    assert fan_in.wire["tasks"]["each"]["phase"] == "Succeeded"
    assert "itemValues" not in fan_in.wire["tasks"]["each"]
    assert [m.task for m in fan_in.enqueue] == ["merge"]
    assert fan_in.wire["progress"] == "3/4"


def test_a_manual_retry_of_nothing_dead_lettered_is_refused_with_the_reason() -> None:
    workflow = spec(cmd("a"))
    running = step(workflow, {})
    for target, reason in (
        ("all", "nothing is dead-lettered"),
        ("a", "task 'a' is not dead-lettered"),
        ("nope", "workflow has no task 'nope'"),
    ):
        with pytest.raises(engine.NothingToRetry, match=reason):
            engine.revive(workflow, running.status, target, now=T0)
    refused = engine.manual_retry(workflow, running.status, "a", now=T0)
    assert refused.status is running.status
    assert (refused.notice.reason, refused.revived) == ("RetryRefused", [])


def test_a_manual_retry_of_many_children_names_the_first_ten_and_counts_the_rest() -> None:
    each = cmd("each", "{{ item }}", forEach="{{ range(12) | list }}", retry={"limit": 0})
    workflow = spec(each, concurrency=12)
    first = step(workflow, {})
    dead = step(workflow, first.status, [failed(m) for m in first.enqueue])
    retried = engine.manual_retry(workflow, dead.status, "each", now=T0)
    assert retried.notice.reason == "Retried"
    assert retried.notice.message.endswith("each[9] and 2 more")
    assert len(retried.revived) == 12


def test_a_retry_is_never_due_before_its_backoff_even_between_whole_seconds() -> None:
    retry = {"limit": 1, "backoff": {"durationSeconds": 1, "jitter": 0}}
    workflow = spec(cmd("flaky", retry=retry))
    now = T0 + timedelta(milliseconds=700)
    first = step(workflow, {}, now=now)
    retrying = step(workflow, first.status, [failed(first.enqueue[0])], now=now)
    assert retrying.wake_at is not None
    assert retrying.wake_at - now >= timedelta(seconds=1)


def test_one_call_renders_for_at_most_its_cpu_budget_and_wakes_at_once_for_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue #31, problem 3: renders ran on the operator's loop without a per-workflow bound
    (500 tasks of 100 ms templates: a minute of a blocked operator in one call)."""
    from treadle.core import scheduling

    spent = [0.0]

    def clock() -> float:  # each render costs 100 ms of (virtual) CPU
        spent[0] += 0.1
        return spent[0]

    monkeypatch.setattr(scheduling.Run, "render_clock", staticmethod(clock))
    workflow = spec(*(cmd(f"t{i}") for i in range(8)), concurrency=8)
    first = step(workflow, {})
    assert 0 < len(first.enqueue) < 8
    assert first.wake_at == T0
    second = step(workflow, first.status)
    launched = {m.task for m in first.enqueue} | {m.task for m in second.enqueue}
    assert len(launched) > len(first.enqueue)


def test_a_fan_out_whose_rendering_budget_runs_out_loses_no_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found measuring #33 on a busy machine: a 10,000-child fan-out stuck Running at 7,671
    with nothing in flight. A child that could not be rendered because the call's budget was
    spent was stepped over all the same (`nextItem` moved past it): it never ran."""
    from treadle.core import scheduling

    spent = [0.0]

    def clock() -> float:  # each render costs 20 ms of (virtual) CPU
        spent[0] += 0.02
        return spent[0]

    monkeypatch.setattr(scheduling.Run, "render_clock", staticmethod(clock))
    workflow = spec(
        cmd("each", "echo", "{{ item }}", forEach="{{ params.ids }}"),
        params={"ids": list(range(50))},
        concurrency=50,
    )
    current = step(workflow, {})
    assert 0 < len(current.enqueue) < 50  # the budget cut the first call short
    launched = [m.item for m in current.enqueue]
    for _ in range(50):
        if current.status.phase == "Succeeded":
            break
        current = step(workflow, current.status, [ok(m) for m in current.enqueue])
        launched += [m.item for m in current.enqueue]
    assert sorted(launched) == list(range(50))
    assert current.status.phase == "Succeeded"


def test_a_fan_outs_retries_cut_short_by_the_rendering_budget_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same for children waiting for a retry: one taken off `retryAt` and not launched
    (the budget was spent) was neither running, retrying nor done."""
    from treadle.core import scheduling

    workflow = spec(
        cmd("each", "echo", "{{ item }}", forEach="{{ params.ids }}",
            retry={"limit": 1, "backoff": {"durationSeconds": 1, "jitter": 0}}),
        params={"ids": list(range(20))},
        concurrency=20,
    )  # fmt: skip
    current = step(workflow, {})
    assert len(current.enqueue) == 20
    current = step(workflow, current.status, [failed(m) for m in current.enqueue])
    spent = [0.0]

    def clock() -> float:
        spent[0] += 0.02
        return spent[0]

    monkeypatch.setattr(scheduling.Run, "render_clock", staticmethod(clock))
    retried: list[int | None] = []
    now = T0 + timedelta(seconds=5)
    for _ in range(40):
        current = step(workflow, current.status, [ok(m) for m in current.enqueue], now=now)
        retried += [m.item for m in current.enqueue]
        if current.status.phase == "Succeeded":
            break
    assert sorted(i for i in retried if i is not None) == list(range(20))
    assert current.status.phase == "Succeeded"
