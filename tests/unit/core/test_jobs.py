"""A `job` task's attempt as a Job (issue #34): named by the attempt, signed, restricted, and
judged from the Job and its pods with the cause named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from treadle.core import access, admission, causes, jobs, podspecs
from treadle.core.messages import TaskMessage

KEY = b"k" * 32
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SPEC = {
    "image": "ghcr.io/acme/trainer:1.4",
    "command": ["python", "-m", "train"],
    "args": ["--rows", "12"],
    "env": [{"name": "MODE", "value": "full"}],
    "resources": {"limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}},
    "volumes": [{"name": "scratch", "emptyDir": {}}],
    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
    "nodeSelector": {"pool": "gpu"},
    "tolerations": [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
    "queueName": "research",
    "startTimeoutSeconds": 60,
}


def message(attempt: int = 1, item: int | None = None, task: str = "train") -> TaskMessage:
    return TaskMessage(
        workflow_uid="uid-1",
        workflow="data/nightly.etl",
        task=task,
        item=item,
        attempt=attempt,
        action={"job": SPEC},
        timeout_seconds=600,
        run=1,
    )


def body(attempt: int = 1, **changes: Any) -> dict[str, Any]:
    return jobs.job_body(
        message(attempt, **changes),
        SPEC,
        pool="wf-uid-1",
        owner_uid="uid-1",
        key=KEY,
        deadline_seconds=600,
    )


def test_a_jobs_name_is_the_attempts_the_same_every_time_and_a_valid_label() -> None:
    first, again, second = (
        jobs.job_name(message(1)),
        jobs.job_name(message(1)),
        jobs.job_name(message(2)),
    )
    assert first == again != second
    assert first.startswith("nightly-etl-train-")
    long = jobs.job_name(message(task="t" * 63))
    assert len(long) <= 63
    assert jobs.job_name(message(item=3)) != jobs.job_name(message(item=4))


def test_the_job_runs_the_task_restricted_owned_by_its_workflow_with_no_retries_of_its_own() -> (
    None
):
    job = body()
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 600)
    assert spec["podFailurePolicy"]["rules"][0] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget"}],
    }
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/acme/trainer:1.4"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"pool": "gpu"}
    env = {v["name"]: v.get("value") for v in container["env"]}
    assert env["MODE"] == "full"
    assert env["TREADLE_ATTEMPT"] == "1"
    meta = job["metadata"]
    assert meta["labels"][jobs.QUEUE_LABEL] == "research"
    assert meta["ownerReferences"][0]["uid"] == "uid-1"
    assert meta["namespace"] == "data"


def test_a_claim_reads_back_only_when_treadle_signed_it() -> None:
    job = body()
    claim = jobs.read_claim(job, KEY)
    assert claim is not None
    assert (claim.workflow_uid, claim.task, claim.attempt, claim.pool) == (
        "uid-1",
        "train",
        1,
        "wf-uid-1",
    )
    assert claim.start_timeout_seconds == 60
    assert jobs.read_claim(job, b"another key") is None
    forged = json.loads(job["metadata"]["annotations"][jobs.ATTEMPT_ANNOTATION])
    forged["pool"] = "victims-pool"
    job["metadata"]["annotations"][jobs.ATTEMPT_ANNOTATION] = json.dumps(forged)
    assert jobs.read_claim(job, KEY) is None
    moved = body()
    moved["metadata"]["namespace"] = "elsewhere"
    assert jobs.read_claim(moved, KEY) is None


def pod(
    phase: str,
    *,
    name: str = "p1",
    created: datetime = NOW,
    state: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if state is not None:
        status["containerStatuses"] = [{"name": "main", "state": state}]
    if reason:
        status["reason"] = reason
    return {
        "metadata": {"name": name, "creationTimestamp": created.isoformat()},
        "spec": {"nodeName": "node-1"},
        "status": status,
    }


def judge(job: dict[str, Any], pods: list[dict[str, Any]], now: datetime = NOW) -> jobs.Judgement:
    return jobs.judge(job, pods, start_timeout_seconds=60, now=now)


def test_a_succeeded_pod_is_the_attempts_success_read_from_its_log() -> None:
    judged = judge(body(), [pod("Succeeded", state={"terminated": {"exitCode": 0}})])
    assert (judged.verdict, judged.log_from, judged.node) == ("succeeded", "p1", "node-1")


def test_a_running_pod_is_a_start_on_its_pod_and_node() -> None:
    started = (NOW - timedelta(seconds=3)).isoformat()
    judged = judge(body(), [pod("Running", state={"running": {"startedAt": started}})])
    assert (judged.verdict, judged.pod, judged.node) == ("running", "p1", "node-1")
    assert judged.started_at == pytest.approx((NOW - timedelta(seconds=3)).timestamp())


@pytest.mark.parametrize(
    ("terminated", "error", "code"),
    [
        ({"exitCode": 3, "reason": "Error"}, "exit code 3", 3),
        ({"exitCode": 137, "reason": "OOMKilled"}, "OOMKilled (exit code 137)", 137),
    ],
)
def test_a_failed_pod_names_its_exit_code_and_reason(
    terminated: dict[str, Any], error: str, code: int
) -> None:
    judged = judge(body(), [pod("Failed", state={"terminated": terminated})])
    assert (judged.verdict, judged.error) == ("failed", error)
    assert judged.cause == causes.Cause("exit", exit_code=code)
    assert causes.refusal(judged.cause, exit_codes=[75]) == (
        f"exit code {code} is not in retry.retryOn.exitCodes (75)"
    )


def test_an_evicted_pod_is_not_the_attempts_failure_the_job_replaces_it() -> None:
    evicted = pod(
        "Failed",
        state={"terminated": {"exitCode": 137}},
        conditions=[
            {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}
        ],
    )
    replacement = pod("Pending", name="p2", created=NOW + timedelta(seconds=1))
    assert judge(body(), [evicted, replacement]).verdict == "pending"


def test_a_job_past_its_deadline_is_a_timeout() -> None:
    job = body()
    job["status"] = {
        "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
    }
    dying = pod("Failed", state={"terminated": {"exitCode": 143}})
    judged = judge(job, [dying])
    assert judged.verdict == "failed"
    assert judged.cause == causes.Cause("timeout")
    assert "timed out after 600 s" in str(judged.error)


def test_an_image_that_cannot_be_pulled_fails_only_past_the_start_timeout_and_stops_the_job() -> (
    None
):
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": "back-off pulling image"}}
    young = pod("Pending", state=waiting, created=NOW - timedelta(seconds=30))
    judged = judge(body(), [young])
    assert (judged.verdict, judged.message) == (
        "pending",
        "ImagePullBackOff: back-off pulling image",
    )
    old = pod("Pending", state=waiting, created=NOW - timedelta(seconds=61))
    judged = judge(body(), [old])
    assert judged.verdict == "failed"
    assert judged.stop
    assert judged.error == (
        "the pod did not start within 60 s: ImagePullBackOff: back-off pulling image"
    )


def test_an_invalid_image_name_fails_at_once() -> None:
    waiting = {"waiting": {"reason": "InvalidImageName", "message": "bad"}}
    assert judge(body(), [pod("Pending", state=waiting)]).verdict == "failed"


def test_an_unschedulable_pod_fails_past_the_start_timeout_naming_why() -> None:
    unschedulable = pod(
        "Pending",
        created=NOW - timedelta(seconds=90),
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes have nvidia.com/gpu"},
        ],
    )  # fmt: skip
    judged = judge(body(), [unschedulable])
    assert judged.error == (
        "the pod did not start within 60 s: Unschedulable: 0/3 nodes have nvidia.com/gpu"
    )


def test_a_program_the_node_cannot_start_fails_with_its_reason() -> None:
    waiting = {"waiting": {"reason": "CreateContainerError", "message": "executable 'x' not found"}}
    judged = judge(body(), [pod("Failed", state=waiting)])
    assert judged.verdict == "failed"
    assert judged.error == "CreateContainerError: executable 'x' not found"


def test_a_suspended_job_waits_for_admission_without_failing() -> None:
    job = body()
    job["spec"]["suspend"] = True
    judged = judge(job, [], now=NOW + timedelta(hours=2))
    assert judged.verdict == "suspended"
    assert judged.message == "waiting for admission by queue 'research': the Job is suspended"


@pytest.mark.parametrize(
    ("log", "whole", "output"),
    [
        ('{"rows": 12}\n', True, {"rows": 12}),
        ('loading...\nwarning: slow\n{"rows": 12}\n', True, {"rows": 12}),
        ("plain text\nmore\n", True, "plain text\nmore"),
        ("", True, None),
        ('{"rows": 1', False, '{"rows": 1'),
    ],
)
def test_the_output_is_the_log_as_json_else_its_last_line_as_json_else_text(
    log: str, whole: bool, output: Any
) -> None:
    assert jobs.output_of(log, whole=whole) == output


def task(**job: Any) -> dict[str, Any]:
    return {"tasks": [{"name": "train", "job": {"image": "trainer:1", **job}}]}


def problems_of(spec: dict[str, Any]) -> list[str]:
    return admission.admit_workflow(spec, {"name": "w", "namespace": "n", "uid": "u"})[1]


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}, "volumes[0].hostPath"),
        ({"securityContext": {"privileged": True}}, "securityContext.privileged"),
        ({"env": [{"name": "TREADLE_REDIS_URL", "value": "x"}]}, "env[0].name"),
        ({"resources": {"limits": {"cpu": "lots"}}}, "resources.limits.cpu"),
        ({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, "volumeMounts[0].name"),
        ({"tolerations": [{"operator": "Exists"}]}, "tolerations[0]"),
        ({"hostNetwork": True}, "hostNetwork"),
        ({"serviceAccountName": "admin"}, "serviceAccountName"),
        ({"queueName": "Not A Label!"}, "queueName"),
    ],
)  # fmt: skip
def test_every_field_outside_the_allow_list_is_refused_at_apply_naming_it(
    job: dict[str, Any], field: str
) -> None:
    problems = problems_of(task(**job))
    assert any(p.startswith(f"spec.tasks[0].job.{field}") for p in problems), problems


def test_a_good_job_task_passes_and_its_secrets_are_found_for_the_access_check() -> None:
    spec = task(
        env=[{"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}],
        volumes=[{"name": "creds", "secret": {"secretName": "creds"}}],
        volumeMounts=[{"name": "creds", "mountPath": "/creds"}],
    )
    assert problems_of(spec) == []
    named = {(r.verb, r.resource, r.name) for r in access.references(spec)}
    assert named == {("get", "secrets", "db"), ("get", "secrets", "creds"), ("create", "jobs", "")}
    jobs_ref = next(r for r in access.references(spec) if r.resource == "jobs")
    assert access.refusal(jobs_ref, access.Requester("alice"), "data") == (
        "spec.tasks[0].job: runs a pod of its own (a Job), which 'alice' may not create in "
        "namespace 'data'"
    )


def test_the_job_allow_list_is_the_run_pods() -> None:
    assert podspecs.JOB_CONTAINER_FIELDS <= podspecs.CONTAINER_FIELDS


def test_a_for_each_whose_job_does_not_use_its_item_is_one_indexed_job() -> None:
    from treadle.api.workflows import Task

    uniform = Task.model_validate(
        {"name": "t", "forEach": "{{ params.xs }}", "job": {"image": "x", "args": ["go"]}}
    )
    per_item = Task.model_validate(
        {"name": "t", "forEach": "{{ params.xs }}", "job": {"image": "x", "args": ["{{ item }}"]}}
    )
    plain = Task.model_validate({"name": "t", "job": {"image": "x"}})
    assert jobs.one_job_for_children(uniform)
    assert not jobs.one_job_for_children(per_item)
    assert not jobs.one_job_for_children(plain)


def test_the_indexed_job_runs_every_child_with_the_concurrency_and_a_timeout_per_pod() -> None:
    job = jobs.job_body(
        message(item=7), SPEC, pool="p", owner_uid="uid-1", key=KEY, deadline_seconds=30,
        indexed=(200, 10), items="[1,2]",
    )  # fmt: skip
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == (
        "Indexed",
        200,
        10,
    )
    assert spec["backoffLimitPerIndex"] == 0
    assert "backoffLimit" not in spec
    assert "activeDeadlineSeconds" not in spec
    assert spec["template"]["spec"]["activeDeadlineSeconds"] == 30
    env = {v["name"]: v for v in spec["template"]["spec"]["containers"][0]["env"]}
    assert env["TREADLE_ITEMS"]["value"] == "[1,2]"
    assert env["TREADLE_ITEM_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    claim = jobs.read_claim(job, KEY)
    assert claim is not None
    assert (claim.item, claim.attempt, claim.completions) == (None, 1, 200)
    # One name for the task's children, whichever child's launch made it.
    again = jobs.job_body(
        message(item=3), SPEC, pool="p", owner_uid="uid-1", key=KEY, deadline_seconds=30,
        indexed=(200, 10), items="[1,2]",
    )  # fmt: skip
    assert again["metadata"]["name"] == job["metadata"]["name"]
    assert jobs.index_of({"metadata": {"annotations": {jobs.INDEX: "12"}}}) == 12


def test_a_job_suspended_again_by_its_queue_waits_its_stopped_pod_is_no_failure() -> None:
    job = body()
    job["spec"]["suspend"] = True
    stopped = pod("Failed", state={"terminated": {"exitCode": 143}})
    judged = judge(job, [stopped])
    assert judged.verdict == "suspended"


def test_a_step_handed_a_secret_keeps_its_log_out_of_its_error() -> None:
    assert not jobs.reads_secrets(SPEC)
    with_secret = {**SPEC, "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s"}}}]}
    assert jobs.reads_secrets(with_secret)
    mounted = {**SPEC, "volumes": [{"name": "v", "secret": {"secretName": "s"}}]}
    assert jobs.reads_secrets(mounted)
    job = jobs.job_body(
        message(), with_secret, pool="p", owner_uid="uid-1", key=KEY, deadline_seconds=None
    )
    claim = jobs.read_claim(job, KEY)
    assert claim is not None
    assert claim.reads_secrets


def test_a_running_job_steps_live_log_is_its_pods() -> None:
    from treadle.api.workflows import WorkflowStatus
    from treadle.core import tasklogs

    spec = {"tasks": [{"name": "fit", "job": {"image": "x"}}, {"name": "w", "command": {}}]}
    status = WorkflowStatus.of(
        {
            "tasks": {
                "fit": {"phase": "Running", "attempts": 2, "worker": "fit-abc-x1 on node-1"},
                "w": {"phase": "Running", "attempts": 1, "worker": "pool-worker-0"},
            }
        }
    )
    assert tasklogs.running_pod(status, spec, tasklogs.Address("fit", None, 2, False)) == (
        "fit-abc-x1"
    )
    assert tasklogs.running_pod(status, spec, tasklogs.Address("fit", None, 1)) is None
    assert tasklogs.running_pod(status, spec, tasklogs.Address("w", None, 1, False)) is None
    assert tasklogs.own_pod_task(status, spec, "fit")
    assert not tasklogs.own_pod_task(status, spec, "w")
