"""Scheduled workflows' decisions on fixed datetimes: concurrency policies, catch-up of missed
slots, backfills, the record of succeeded slots, and the Workflow a run is."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from treadle.api.syncjobs import ActiveRun, SyncJobSpec, SyncJobStatus
from treadle.core import backfills, runbodies, slots, slotsets, syncadmission, syncruns, syncs

CREATED = datetime(2025, 1, 1, tzinfo=UTC)
HOURLY = slots.Schedule("0 * * * *")
TEMPLATE = {"params": {"day": None}, "tasks": [{"name": "a", "command": {"args": ["true"]}}]}


def at(hour: int, minute: int = 0, day: int = 15) -> datetime:
    return datetime(2025, 10, day, hour, minute, tzinfo=UTC)


def job(**extra: Any) -> SyncJobSpec:
    workflow = {"workflowTemplateRef": {"name": "etl"}, "params": {"day": "{{ slot[:10] }}"}}
    return SyncJobSpec.model_validate({"schedule": "0 * * * *", "workflow": workflow, **extra})


def decide(spec: SyncJobSpec, status: SyncJobStatus, now: datetime) -> syncs.Decision:
    return syncs.decide(spec, status, now=now, created=CREATED)


def running(slot_hour: int, name: str = "r", **entry: Any) -> SyncJobStatus:
    slot = slots.Slot(at(slot_hour), at(slot_hour + 1))
    return syncs.started(
        SyncJobStatus(), slot, now=at(slot_hour), run=name, kind="Workflow", **entry
    )


def with_(status: SyncJobStatus, **changed: Any) -> SyncJobStatus:
    return status.model_copy(update=changed)


# concurrency policies ---------------------------------------------------------------------


def test_forbid_waits_for_the_run_under_way_and_allow_starts_beside_it() -> None:
    status = running(10)
    assert decide(job(), status, at(11)).reason == "a run is in progress"
    allowed = decide(job(concurrencyPolicy="Allow"), status, at(11))
    assert (allowed.run, allowed.replace) == (True, ())
    assert allowed.slot is not None
    assert allowed.slot.start == at(11)
    # ... but not a second run of the slot whose run is under way
    same = decide(job(concurrencyPolicy="Allow"), status, at(10, 30))
    assert (same.run, same.reason) == (False, "a run of this slot is in progress")


def test_allow_keeps_at_most_fifty_runs_under_way() -> None:
    status = SyncJobStatus()
    for hour in range(syncs.MAX_ALLOWED_RUNS):
        slot = slots.Slot(at(0) + timedelta(hours=hour), at(1) + timedelta(hours=hour))
        status = syncs.started(status, slot, now=slot.start, run=f"r{hour}")
    later = at(0) + timedelta(hours=syncs.MAX_ALLOWED_RUNS)
    decision = decide(job(concurrencyPolicy="Allow"), status, later)
    assert (decision.run, decision.reason) == (
        False,
        "50 runs are in progress, the most Allow keeps",
    )


def test_replace_names_the_runs_to_terminate_when_a_new_slot_begins() -> None:
    status = running(10, name="etl-20251015100000")
    decision = decide(job(concurrencyPolicy="Replace"), status, at(11))
    assert (decision.run, decision.replace) == (True, ("etl-20251015100000",))
    assert not decide(job(concurrencyPolicy="Replace"), status, at(10, 30)).run


def test_an_older_run_ending_after_a_newer_one_began_leaves_the_newer_slots_outcome() -> None:
    spec = job(concurrencyPolicy="Allow")
    both = syncs.started(running(10, "old"), slots.Slot(at(11), at(12)), now=at(11), run="new")
    assert [r.name for r in syncs.active_runs(both)] == ["old", "new"]
    old_failed = syncs.finished(spec, both, now=at(11, 5), succeeded=False, run="old")
    assert old_failed.last_outcome is None  # the current slot (11:00) is still running
    assert old_failed.consecutive_failures == 1
    assert old_failed.active_run == "new"
    done = syncs.finished(spec, old_failed, now=at(11, 30), succeeded=True, run="new")
    assert (done.last_outcome, done.active_run, done.active_runs) == ("Succeeded", None, [])
    assert done.succeeded_slots == "2025-10-15T11:00:00Z"


def test_a_status_from_before_active_runs_still_reads_its_run() -> None:
    old = SyncJobStatus.model_validate({"activeRun": "r", "currentSlot": "2025-10-15T10:00:00Z"})
    assert syncs.active_runs(old) == [
        ActiveRun(name="r", kind="Pod", slot="2025-10-15T10:00:00Z", holder="r", backfill=False),
    ]
    assert syncs.finished(job(), old, now=at(10, 5), succeeded=True).last_outcome == "Succeeded"


# catch-up ---------------------------------------------------------------------------------


def away_since(hour: int) -> SyncJobStatus:
    """The job ran the slot of `hour` and then the operator went away."""
    return syncs.finished(job(), running(hour), now=at(hour, 10), succeeded=True)


def test_latest_runs_only_the_latest_missed_slot() -> None:
    decision = decide(job(), away_since(5), at(10, 3))
    assert (decision.run, decision.reason, decision.catch_up_since) == (True, "new slot", None)
    assert decision.slot is not None
    assert decision.slot.start == at(10)


def test_all_runs_every_missed_slot_oldest_first_at_most_max_runs() -> None:
    spec = job(catchUp={"policy": "All", "maxRuns": 3})
    status, ran, now = away_since(5), [], at(10, 3)
    for _ in range(5):
        decision = decide(spec, status, now)
        assert decision.run
        assert decision.slot is not None
        ran.append(decision.slot.start.hour)
        run = syncs.started(
            status, decision.slot, now=now, run=f"r{len(ran)}",
            catch_up_since=decision.catch_up_since,
        )  # fmt: skip
        status = syncs.finished(spec, run, now=now, succeeded=True)
        now += timedelta(minutes=2)
        if decision.slot.start == at(10):
            break
    assert ran == [8, 9, 10]  # the latest three, oldest first, the current slot last
    assert status.catch_up_since is None
    assert (
        status.succeeded_slots == "2025-10-15T05:00:00Z,2025-10-15T08:00:00Z/2025-10-15T10:00:00Z"
    )
    assert "2 more to go" in decide(spec, away_since(5), at(10, 3)).reason


def test_a_skipped_catch_up_slot_is_retried_after_the_wait_and_a_failed_one_makes_way() -> None:
    spec = job(catchUp={"policy": "All"}, skippedRetry={"minSeconds": 60, "maxSeconds": 60})
    first = decide(spec, away_since(8), at(10, 3))
    assert first.slot is not None
    assert first.slot.start == at(9)
    skipped = syncs.skipped(
        spec, with_(away_since(8), catch_up_since="2025-10-15T10:03:00Z"),
        first.slot, now=at(10, 3), reason="PipelineLocked", holder="x",
    )  # fmt: skip
    soon = decide(spec, skipped, at(10, 3, day=15) + timedelta(seconds=30))
    assert (soon.run, soon.reason) == (False, "catching up: too soon to retry")
    again = decide(spec, skipped, at(10, 4, day=15) + timedelta(seconds=30))
    assert again.run
    assert again.retry
    assert again.slot is not None
    assert again.slot.start == at(9)
    failed = syncs.finished(
        spec, syncs.started(skipped, first.slot, now=at(10, 5), run="r", catch_up_since=at(10, 3)),
        now=at(10, 6), succeeded=False,
    )  # fmt: skip
    after = decide(spec, failed, at(10, 6))
    assert after.run
    assert after.slot is not None
    assert after.slot.start == at(10)


def test_catching_up_ends_startingdeadlineseconds_after_it_began() -> None:
    spec = job(catchUp={"policy": "All"}, startingDeadlineSeconds=600)
    status = with_(away_since(5), catch_up_since="2025-10-15T10:00:00Z")
    assert decide(spec, status, at(10, 9)).run  # within 10 min of the return: 06:00 runs
    late = decide(spec, status, at(10, 11))
    assert (late.run, late.catch_up_since) == (False, None)
    assert "more than startingDeadlineSeconds (600)" in late.reason


def test_catch_up_slots_steps_back_at_most_the_limit() -> None:
    found = syncs.catch_up_slots(HOURLY, at(0, day=1), at(10, day=15), 4)
    assert found == [at(7, day=15), at(8, day=15), at(9, day=15), at(10, day=15)]


# succeeded slots ----------------------------------------------------------------------------


def test_succeeded_slots_join_neighbours_and_keep_the_latest_ranges() -> None:
    text = ""
    for hour in (1, 2, 3, 5, 7, 6):
        text = slotsets.add(text, at(hour), HOURLY)
    assert (
        text
        == "2025-10-15T01:00:00Z/2025-10-15T03:00:00Z,2025-10-15T05:00:00Z/2025-10-15T07:00:00Z"
    )
    assert slotsets.contains(text, at(2))
    assert not slotsets.contains(text, at(4))
    assert slotsets.add(text, at(4), HOURLY) == "2025-10-15T01:00:00Z/2025-10-15T07:00:00Z"
    holes = ""
    for day in range(1, 31):
        for hour in (1, 2):
            holes = slotsets.add(holes, at(hour, day=day), HOURLY)
    assert len(slotsets.decode(holes)) == 30
    many = ""
    for hour in range(0, 24 * 5, 2):
        many = slotsets.add(many, datetime(2025, 9, 1, tzinfo=UTC) + timedelta(hours=hour), HOURLY)
    assert len(slotsets.decode(many)) == slotsets.LIMIT


# backfills --------------------------------------------------------------------------------


def request(**given: Any) -> str:
    return json.dumps({"from": "2025-10-15T00:00:00Z", "to": "2025-10-15T06:00:00Z", **given})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not JSON"),
        ('{"from": "x", "to": "y"}', "from and to must be RFC 3339 times"),
        (request(to="2025-10-14T00:00:00Z"), "to must be after from"),
        (request(parallel=0), "parallel must be a whole number from 1 to 20"),
        (request(rerun="yes"), "rerun must be true or false"),
        (request(**{"from": "2025-10-16T00:00:00Z", "to": "2025-10-17T00:00:00Z"}), "future"),
    ],
)
def test_a_backfill_request_that_cannot_run_says_why(text: str, problem: str) -> None:
    found = backfills.parse_request(text, now=at(12))
    assert isinstance(found, str)
    assert problem in found


def begun(**given: Any) -> SyncJobStatus:
    parsed = backfills.parse_request(request(**given), now=at(12))
    assert isinstance(parsed, backfills.Request)
    status = backfills.begin(job(), SyncJobStatus(), parsed, now=at(12))
    assert isinstance(status, SyncJobStatus)
    return status


def test_a_backfill_holds_its_range_and_refuses_a_second_or_a_huge_one() -> None:
    status = begun()
    backfill = status.backfill
    assert backfill is not None
    assert (backfill.id, backfill.slots, backfill.next, backfill.phase) == (
        1, 6, "2025-10-15T00:00:00Z", "Running",
    )  # fmt: skip
    again = backfills.begin(job(), status, backfills.Request(at(0), at(3)), now=at(12))
    assert again == "backfill 1 (2025-10-15T00:00:00Z/2025-10-15T06:00:00Z) is still running"
    minutely = SyncJobSpec.model_validate(
        {**job().model_dump(by_alias=True), "schedule": "* * * * *"}
    )
    huge = backfills.begin(
        minutely, SyncJobStatus(), backfills.Request(at(0, day=1), at(0, day=15)), now=at(12)
    )
    assert huge == "the range holds more than 10000 slots: split it"
    empty = backfills.begin(
        job(), SyncJobStatus(), backfills.Request(at(1, 10), at(1, 20)), now=at(12)
    )
    assert empty == "the range holds no slot of the schedule"


def run_backfill(
    status: SyncJobStatus, outcomes: dict[int, bool]
) -> tuple[SyncJobStatus, list[list[int]]]:
    """Steps a backfill to its end; each step's started slots (hours) in order."""
    spec, waves, now = job(), [], at(12)
    for _ in range(20):
        step = backfills.step(spec, status, now=now)
        status = step.status
        if backfills.running(status) is None:
            break
        for slot in step.due:
            status = backfills.started(
                spec, status, slot, now=now, run=f"r{slot.start.hour}", kind="Workflow", holder="h"
            )
        waves.append([slot.start.hour for slot in step.due])
        for run in backfills.runs_under_way(status):
            hour = int(run.name[1:])
            status = syncs.finished(
                spec, status, now=now, succeeded=outcomes.get(hour, True), run=run.name
            )
        now += timedelta(minutes=1)
    return status, waves


def test_a_backfill_runs_oldest_first_in_parallel_and_skips_slots_that_succeeded() -> None:
    status = with_(begun(parallel=2), succeeded_slots="2025-10-15T02:00:00Z/2025-10-15T03:00:00Z")
    done, waves = run_backfill(status, {4: False})
    assert waves == [[0, 1], [4, 5]]
    backfill = done.backfill
    assert backfill is not None
    assert (backfill.done, backfill.failed, backfill.skipped, backfill.phase) == (
        3, 1, 2, "Complete",
    )  # fmt: skip
    assert backfill.message == "6/6 slots: 3 succeeded, 1 failed, 2 skipped (had succeeded)"
    assert done.last_outcome is None
    assert done.consecutive_failures is None


def test_a_rerun_runs_succeeded_slots_too_and_a_cancel_starts_nothing_more() -> None:
    status = with_(begun(rerun=True), succeeded_slots="2025-10-15T00:00:00Z/2025-10-15T05:00:00Z")
    _, waves = run_backfill(status, {})
    assert waves == [[0], [1], [2], [3], [4], [5]]
    cancelled = backfills.cancel(begun(), now=at(12))
    assert cancelled is not None
    assert cancelled.backfill is not None
    assert cancelled.backfill.phase == "Cancelled"
    assert backfills.step(job(), cancelled, now=at(12)).due == []
    assert backfills.cancel(cancelled, now=at(12)) is None


# the Workflow a run is ------------------------------------------------------------------------


def test_a_runs_workflow_has_the_slot_and_fencing_token_in_its_params() -> None:
    body = runbodies.run_body(runbodies.NewRun(
        job="etl", namespace="ns", uid="u", spec=job(), name="etl-20251015100000",
        slot=at(10), locks=[("treadle-pipeline-etl", 7)], holder="etl-20251015100000",
    ))  # fmt: skip
    assert body["kind"] == "Workflow"
    assert body["spec"] == {"workflowTemplateRef": {"name": "etl"}, "params": {"day": "2025-10-15"}}
    assert body["metadata"]["labels"]["treadle.dev/lock-holder"] == "etl-20251015100000"
    assert body["metadata"]["ownerReferences"][0]["kind"] == "SyncJob"
    inline = job(workflow={
        "spec": {"workerPool": "p", "params": {"n": 1}, "tasks": TEMPLATE["tasks"]},
        "params": {"token": "{{ fencing_token }}", "for": "{{ job }}@{{ slot }}"},
    })  # fmt: skip
    spec = runbodies.run_workflow(runbodies.NewRun(
        job="etl", namespace="ns", uid="u", spec=inline, name="n", slot=at(10),
        locks=[("treadle-pipeline-etl", 7)],
    ))["spec"]  # fmt: skip
    assert spec == {
        "workerPool": "p",
        "params": {"n": 1, "token": "7", "for": "etl@2025-10-15T10:00:00Z"},
        "tasks": [{"name": "a", "command": {"args": ["true"]}}],
    }
    assert syncruns.workflow_spec({"spec": {"tasks": []}}, syncruns.SAMPLE) == {"tasks": []}


def test_slot_is_rendered_in_an_inline_specs_own_params_too() -> None:
    """Issue #32, problem 3: `workflow.spec.params: {when: "{{ slot }}"}` ran with the literal
    text; only `workflow.params` was rendered."""
    run = {"spec": {"params": {"when": "{{ slot }}", "n": 1}, "tasks": []}}
    spec = syncruns.workflow_spec(run, syncruns.SAMPLE)
    assert spec["params"] == {"when": "2026-01-01T00:00:00Z", "n": 1}
    bad = {"spec": {"params": {"when": "{{ nope }}"}, "tasks": []}}
    [problem] = syncruns.problems(bad)
    assert problem.startswith("spec.workflow.spec.params.when: ")


def test_a_workflow_run_is_checked_at_apply_time_naming_the_field() -> None:
    base: dict[str, Any] = {"schedule": "0 * * * *"}
    ref = {"workflowTemplateRef": {"name": "etl"}}
    pod = {"spec": {"containers": [{"name": "c", "image": "x"}]}}
    assert syncadmission.syncjob_problems(base) == [
        "spec: set template (a pod) or workflow (a Workflow) for the runs, not both"
    ]
    assert syncadmission.syncjob_problems({**base, "template": pod, "workflow": ref}) == [
        "spec: set template (a pod) or workflow (a Workflow) for the runs, not both"
    ]
    assert syncadmission.syncjob_problems({**base, "workflow": {**ref, "spec": TEMPLATE}}) == [
        "spec.workflow: set workflowTemplateRef (a WorkflowTemplate) or spec (a Workflow spec), "
        "not both"
    ]
    typo = {**base, "workflow": {**ref, "params": {"dya": "{{ slot }}"}}}
    assert syncadmission.syncjob_problems(typo, TEMPLATE) == [
        "spec.workflow.params.dya: WorkflowTemplate 'etl' has no parameter 'dya' (its "
        "parameters: day)"
    ]
    assert syncadmission.syncjob_problems(typo) == []  # the operator's check leaves the template
    assert syncadmission.syncjob_problems({**base, "workflow": ref}, None) == [
        "spec.workflow.workflowTemplateRef.name: WorkflowTemplate 'etl' does not exist in this "
        "namespace"
    ]
    unknown = {**base, "workflow": {**ref, "params": {"day": "{{ slto }}"}}}
    assert syncadmission.syncjob_problems(unknown, TEMPLATE) == [
        "spec.workflow.params.day: '{{ slto }}': 'slto' is undefined"
    ]
    cycle = {"tasks": [{"name": "a", "dependsOn": ["a"], "command": {"args": ["true"]}}]}
    found = syncadmission.syncjob_problems({**base, "workflow": {"spec": cycle}})
    assert len(found) == 1
    assert found[0].startswith("spec.workflow.spec.tasks")


def test_a_backfill_request_nested_too_deep_is_refused_as_not_json() -> None:
    """Else the operator's step raised on every look and the request stayed for ever."""
    found = backfills.parse_request("[" * 100_000 + "]" * 100_000, now=at(12))
    assert isinstance(found, str)
    assert found.startswith("not JSON")
