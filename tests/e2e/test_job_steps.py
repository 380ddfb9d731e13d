"""A container per step (issue #34): a `job` task runs each attempt as a batch/v1 Job of its own,
with its own image, env, resources and volumes, between tasks that run on workers; its output
passes on, its failures are named, and terminate takes its pod down.

The local node agent ignores images (a container names its program, found on the agent's PATH);
everything else here is the real Job controller and the real API server."""

from __future__ import annotations

import json
import time
from typing import Any

from support.cluster import Cluster
from support.operator import OperatorProcess

TRAIN = (
    "import json, os, pathlib;"
    "pathlib.Path('/scratch/rows').write_text(os.environ['ROWS']);"
    "print('training on', os.environ['ROWS'], 'rows', flush=True);"
    "print(json.dumps({'rows': int(pathlib.Path('/scratch/rows').read_text()) * 2,"
    " 'mode': os.environ['MODE']}))"
)


def manifest(name: str, tasks: list[dict[str, Any]], **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "treadle.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name},
            "spec": {"tasks": tasks, **spec},
        }
    )


def job(*args: str, **fields: Any) -> dict[str, Any]:
    return {"image": "python:3.12-slim", "command": ["python", "-c", *args], **fields}


def task_jobs(cluster: Cluster, namespace: str, task: str) -> list[dict[str, Any]]:
    listed = cluster.kubectl(
        "get", "jobs", "-n", namespace, "-l", f"treadle.dev/task={task}", "-o", "json"
    )
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return items


def test_a_job_step_in_the_middle_of_a_dag_passes_its_output_on(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    tasks = [
        {"name": "extract", "command": {"args": ["echo", '{"rows": 21}']}},
        {
            "name": "train",
            "dependsOn": ["extract"],
            "job": job(
                TRAIN,
                env=[
                    {"name": "MODE", "value": "full"},
                    {"name": "ROWS", "value": "{{ tasks.extract.output.rows }}"},
                ],
                resources={"requests": {"cpu": "100m", "memory": "64Mi"}},
                volumes=[{"name": "scratch", "emptyDir": {}}],
                volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
            ),
        },
        {
            "name": "load",
            "dependsOn": ["train"],
            "command": {"args": ["echo", "loaded {{ tasks.train.output.rows }}"]},
        },
    ]
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("mixed", tasks))
    crds.wait("twf/mixed", namespace, "condition=Ready", timeout_seconds=120)
    status = crds.get("twf", "mixed", namespace)["status"]
    train = status["tasks"]["train"]
    assert train["phase"] == "Succeeded"
    assert train["output"] == {"rows": 42, "mode": "full"}
    assert status["tasks"]["load"]["output"] == "loaded 42"
    (made,) = task_jobs(crds, namespace, "train")
    assert made["metadata"]["ownerReferences"][0]["name"] == "mixed"
    container = made["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "python:3.12-slim"
    assert container["resources"]["requests"]["cpu"] == "100m"
    assert train["worker"].startswith(made["metadata"]["name"])
    logs = crds.plugin("logs", "mixed", "train", "-n", namespace).stdout
    assert "training on 21 rows" in logs


def test_a_job_steps_failures_are_named_deadline_unstartable_and_exit_code(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    once = {"limit": 0}
    tasks = [
        {
            "name": "slow",
            "timeoutSeconds": 3,
            "retry": once,
            "job": job("import time; time.sleep(60)"),
        },
        {
            "name": "missing",
            "retry": once,
            "job": {
                "image": "nope:1",
                "command": ["no-such-program-34"],
                "startTimeoutSeconds": 10,
            },
        },
        {
            "name": "three",
            "retry": {"limit": 3, "retryOn": {"exitCodes": [75]}},
            "job": job("import sys; print('giving up', file=sys.stderr); sys.exit(3)"),
        },
    ]
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("failing", tasks))
    crds.wait("twf/failing", namespace, "jsonpath={.status.phase}=Failed", timeout_seconds=120)
    status = crds.get("twf", "failing", namespace)["status"]
    errors = {name: entry.get("error") for name, entry in status["tasks"].items()}
    letters = {letter["task"]: letter for letter in status["deadLetters"]}
    assert set(letters) == {"slow", "missing", "three"}
    assert "timed out after 3 s" in letters["slow"]["error"]
    assert "CreateContainerError" in letters["missing"]["error"]
    assert "no-such-program-34" in letters["missing"]["error"]
    three = letters["three"]
    assert three["attempts"] == 1  # exit 3 is not in retryOn.exitCodes: no retry
    assert "exit code 3 is not in retry.retryOn.exitCodes (75)" in three["error"]
    assert "giving up" in three["error"]
    assert errors  # every task says what happened


def test_terminate_deletes_a_running_job_steps_pod_within_10_s(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    program = "import time; print('warming up', flush=True); time.sleep(300)"
    tasks = [{"name": "long", "job": job(program), "timeoutSeconds": 600}]
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("long", tasks))
    crds.wait("twf/long", namespace, "jsonpath={.status.tasks.long.phase}=Running", 90)
    # While it runs, its log so far is read from its pod.
    deadline = time.monotonic() + 20
    while "warming up" not in crds.plugin("logs", "long", "long", "-n", namespace).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    pods = json.loads(
        crds.kubectl(
            "get", "pods", "-n", namespace, "-l", "treadle.dev/task=long", "-o", "json"
        ).stdout
    )["items"]
    assert [p["status"]["phase"] for p in pods] == ["Running"]
    crds.plugin("terminate", "long", "-n", namespace)
    asked = time.monotonic()
    while True:
        left = json.loads(
            crds.kubectl(
                "get", "pods", "-n", namespace, "-l", "treadle.dev/task=long", "-o", "json"
            ).stdout
        )["items"]
        if not left:
            break
        assert time.monotonic() - asked < 10, [p["metadata"].get("deletionTimestamp") for p in left]
        time.sleep(0.5)
    crds.wait("twf/long", namespace, "jsonpath={.status.phase}=Terminated", timeout_seconds=30)
    assert task_jobs(crds, namespace, "long") == []


DOUBLE = (
    "import json, os;"
    "items = json.loads(os.environ['TREADLE_ITEMS']);"
    "print(json.dumps(items[int(os.environ['TREADLE_ITEM_INDEX'])] * 2))"
)


def test_a_job_for_each_of_200_items_is_one_indexed_job_within_its_concurrency(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    tasks = [
        {
            "name": "double",
            "forEach": "{{ range(200) | list }}",
            "job": job(DOUBLE, resources={"requests": {"cpu": "10m"}}),
        },
        {"name": "total", "dependsOn": ["double"], "command": {
            "args": ["echo", "{{ tasks.double.outputs | sum }}"]}},
    ]  # fmt: skip
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("wide", tasks, concurrency=10))
    most = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        phase = crds.kubectl(
            "get", "twf", "wide", "-n", namespace, "-o", "jsonpath={.status.phase}"
        ).stdout
        if phase in ("Succeeded", "Failed"):
            break
        pods = json.loads(
            crds.kubectl(
                "get", "pods", "-n", namespace, "-l", "treadle.dev/task=double", "-o", "json"
            ).stdout
        )["items"]
        running = [p for p in pods if p["status"].get("phase") in ("Pending", "Running")]
        most = max(most, len(running))
        time.sleep(0.5)
    status = crds.get("twf", "wide", namespace)["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["tasks"]["total"]["output"] == 2 * sum(range(200))
    (made,) = task_jobs(crds, namespace, "double")
    assert (made["spec"]["completionMode"], made["spec"]["completions"]) == ("Indexed", 200)
    assert made["spec"]["parallelism"] == 10
    assert 0 < most <= 10
    assert len(json.dumps(status)) < 4096, len(json.dumps(status))


def test_a_job_step_suspended_as_kueue_would_waits_saying_so_then_runs_on(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """Kueue holds a Job by `spec.suspend` (made suspended, or suspended again to preempt it):
    the step waits without failing, its status says why, and it runs once let go."""
    program = "import time; time.sleep(4); print('{\"trained\": true}')"
    tasks = [{"name": "fit", "job": job(program, queueName="research"), "retry": {"limit": 0}}]
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("queued", tasks))
    crds.wait("twf/queued", namespace, "jsonpath={.status.tasks.fit.phase}=Running", 90)
    (made,) = task_jobs(crds, namespace, "fit")
    assert made["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research"
    name = made["metadata"]["name"]
    crds.kubectl(
        "patch", "job", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    crds.wait("twf/queued", namespace, "jsonpath={.status.tasks.fit.phase}=Queued", 60)
    entry = crds.get("twf", "queued", namespace)["status"]["tasks"]["fit"]
    assert entry["waiting"] == "waiting for admission by queue 'research': the Job is suspended"
    time.sleep(6)  # longer than the step's work: suspended, it neither fails nor ends
    status = crds.get("twf", "queued", namespace)["status"]
    assert (status["phase"], status["tasks"]["fit"]["phase"]) == ("Running", "Queued")
    shown = crds.plugin("get", "queued", "-n", namespace).stdout
    assert "waiting for admission" in shown
    crds.kubectl(
        "patch", "job", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    crds.wait("twf/queued", namespace, "condition=Ready", timeout_seconds=90)
    fit = crds.get("twf", "queued", namespace)["status"]["tasks"]["fit"]
    assert (fit["output"], fit["attempts"]) == ({"trained": True}, 1)


def test_a_workflow_past_its_deadline_stops_its_running_job_step(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    tasks = [{"name": "slow", "job": job("import time; time.sleep(120)"), "timeoutSeconds": 300}]
    body = manifest("late", tasks, activeDeadlineSeconds=4)
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=body)
    crds.wait("twf/late", namespace, "jsonpath={.status.phase}=Failed", timeout_seconds=60)
    assert crds.get("twf", "late", namespace)["status"]["tasks"]["slow"]["reason"] == "Deadline"
    deadline = time.monotonic() + 20
    while task_jobs(crds, namespace, "slow"):
        assert time.monotonic() < deadline, "the skipped step's Job still runs"
        time.sleep(0.5)


def test_a_job_the_api_server_refuses_fails_its_step_with_the_reason(
    crds: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """What the allow-list lets through but the API server refuses (here an env name it does
    not take) fails the attempt, saying why, instead of stalling the workflow."""
    tasks = [
        {
            "name": "odd",
            "retry": {"limit": 0},
            "job": job("print(1)", env=[{"name": "A=B", "value": "x"}]),
        }
    ]
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("odd", tasks))
    crds.wait("twf/odd", namespace, "jsonpath={.status.phase}=Failed", timeout_seconds=60)
    (letter,) = crds.get("twf", "odd", namespace)["status"]["deadLetters"]
    assert letter["error"].startswith("the API server refused its Job: ")
    assert "env[0].name" in letter["error"]
