"""Worker pools, decided: which pool runs what, how big a pool should be, what its status says,
and what its Deployment may and may not give its pods (SPEC, Worker pools)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from treadle.api.pools import WorkerPoolSpec
from treadle.api.workflows import WorkflowSpec
from treadle.core import admission, engine, pools, secretrefs

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def workflow(**spec: Any) -> WorkflowSpec:
    tasks = spec.pop("tasks", [{"name": "a", "command": {"args": ["true"]}}])
    return WorkflowSpec.model_validate({"tasks": tasks, **spec})


def pool(**spec: Any) -> WorkerPoolSpec:
    return WorkerPoolSpec.model_validate(spec)


def test_a_workflow_naming_no_pool_runs_on_default_when_the_namespace_has_one() -> None:
    assert pools.choose(workflow(), default_exists=True) == "default"
    assert pools.choose(workflow(), default_exists=False) is None


def test_a_workflow_with_workers_of_its_own_never_lands_on_default() -> None:
    own = workflow(workers={"replicas": 2})
    assert pools.choose(own, default_exists=True) is None


def test_a_named_pool_wins_over_default() -> None:
    assert pools.choose(workflow(workerPool="gpu"), default_exists=True) == "gpu"


def test_naming_a_pool_and_workers_both_is_refused() -> None:
    _, problems = admission.parse(
        WorkflowSpec,
        {"workerPool": "x", "workers": {}, "tasks": [{"name": "a", "command": {"args": ["t"]}}]},
    )
    assert problems == [
        "spec: set workerPool (a shared WorkerPool) or workers (the workflow's own pods), not both"
    ]


def test_a_task_runs_on_its_own_pool_and_the_others_on_the_workflows() -> None:
    spec = workflow(
        tasks=[
            {"name": "a", "command": {"args": ["true"]}},
            {"name": "b", "command": {"args": ["true"]}, "workerPool": "gpu"},
        ]
    )
    assert pools.task_pools(spec, "data", "data.default") == {"a": "data.default", "b": "data.gpu"}
    assert pools.pools_of(spec, "data", "wf-u") == {"wf-u", "data.gpu"}


def test_pools_of_two_namespaces_never_share_an_id() -> None:
    assert pools.shared_pool("a", "default") != pools.shared_pool("b", "default")
    assert pools.is_shared("a.default")
    assert not pools.is_shared(engine.dedicated_pool("u"))
    assert engine.Identity.of({"uid": "u", "namespace": "a"}, "default").pool == "a.default"
    assert engine.Identity.of({"uid": "u", "namespace": "a"}).pool == "wf-u"


def test_a_pool_that_does_not_exist_is_named_with_the_field() -> None:
    spec = workflow(
        workerPool="etl",
        tasks=[
            {"name": "a", "command": {"args": ["true"]}},
            {"name": "b", "command": {"args": ["true"]}, "workerPool": "gpu"},
        ],
    )
    problems = pools.pool_problems(spec, "etl", {"etl": pool()}, {}, 60)
    assert problems == [
        "spec.tasks[1].workerPool: WorkerPool 'gpu' does not exist in this namespace"
    ]
    assert pools.pool_problems(spec, "etl", {}, {}, 60)[0].startswith("spec.workerPool: ")


def test_a_secret_the_tasks_pool_does_not_mount_is_refused() -> None:
    task = {
        "name": "call",
        "http": {
            "url": "https://api.example",
            "headers": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "k"}}}],
        },
    }
    spec = workflow(tasks=[task])
    secrets = secretrefs.workflow_secrets(spec)
    assert secrets == {"call": [("tok", "spec.tasks[0].http.headers[0].valueFrom")]}
    refused = pools.pool_problems(spec, "default", {"default": pool()}, secrets, 60)
    assert refused == [
        "spec.tasks[0].http.headers[0].valueFrom: names Secret 'tok', which "
        "WorkerPool 'default' does not mount (add it to the pool's spec.secrets)"
    ]
    mounted = {"default": pool(secrets=["tok"])}
    assert pools.pool_problems(spec, "default", mounted, secrets, 60) == []


def test_a_timeout_longer_than_the_pool_runs_an_attempt_is_refused() -> None:
    spec = workflow(defaults={"timeoutSeconds": 900})
    found = {"default": pool(maxTaskSeconds=600)}
    assert pools.pool_problems(spec, "default", found, {}, 60) == [
        "spec.tasks[0].timeoutSeconds: 900 s is longer than WorkerPool 'default' runs an attempt "
        "(maxTaskSeconds 600)"
    ]


def load(backlog: int, running: int = 0) -> pools.Load:
    return pools.Load(backlog=backlog, running=running)


def test_a_pool_grows_at_once_to_cover_its_backlog_within_max() -> None:
    spec = pool(replicas={"min": 1, "max": 5}, targetBacklogPerWorker=10)
    grown = pools.scale(spec, current=1, load=load(25, 10), low_since=None, now=T0)
    assert grown == pools.Scaling(4, None)
    capped = pools.scale(spec, current=1, load=load(1000), low_since=None, now=T0)
    assert capped.replicas == 5


def test_a_pool_shrinks_only_after_fewer_pods_sufficed_for_the_scale_down_delay() -> None:
    spec = pool(replicas={"min": 1, "max": 5}, scaleDownAfterSeconds=60)
    first = pools.scale(spec, current=4, load=load(0), low_since=None, now=T0)
    assert first == pools.Scaling(4, T0)
    later = T0 + timedelta(seconds=59)
    assert pools.scale(spec, current=4, load=load(0), low_since=T0, now=later).replicas == 4
    done = pools.scale(spec, current=4, load=load(0), low_since=T0, now=T0 + timedelta(seconds=60))
    assert done == pools.Scaling(1, None)


def test_new_work_while_waiting_to_shrink_starts_the_wait_again() -> None:
    spec = pool(replicas={"min": 1, "max": 5}, targetBacklogPerWorker=10)
    busy = pools.scale(spec, current=4, load=load(40), low_since=T0, now=T0 + timedelta(seconds=30))
    assert busy == pools.Scaling(4, None)


def test_a_pool_with_min_zero_scales_to_zero_when_idle_and_to_one_on_the_first_task() -> None:
    spec = pool(replicas={"min": 0, "max": 3}, scaleDownAfterSeconds=0)
    assert pools.scale(spec, current=2, load=load(0), low_since=None, now=T0).replicas == 0
    assert pools.scale(spec, current=0, load=load(1), low_since=None, now=T0).replicas == 1


def test_without_autoscaling_the_size_is_what_the_scale_subresource_set() -> None:
    spec = pool(autoscaling=False, replicas={"min": 1, "max": 8, "desired": 6})
    assert pools.scale(spec, current=1, load=load(10_000), low_since=None, now=T0).replicas == 6
    unset = pool(autoscaling=False, replicas={"min": 2, "max": 8})
    assert pools.scale(unset, current=5, load=load(0), low_since=None, now=T0).replicas == 2


@given(
    st.integers(0, 20),
    st.integers(0, 20),
    st.integers(0, 5000),
    st.integers(0, 5000),
    st.integers(0, 100),
)
def test_scaling_always_stays_within_min_and_max(
    low: int, extra: int, backlog: int, running: int, current: int
) -> None:
    spec = pool(replicas={"min": low, "max": max(1, low + extra)}, scaleDownAfterSeconds=0)
    wanted = pools.scale(spec, current=current, load=load(backlog, running), low_since=None, now=T0)
    assert spec.replicas.min <= wanted.replicas <= spec.replicas.max
    if backlog + running:
        assert wanted.replicas >= 1


def test_a_pool_is_ready_when_its_wanted_pods_are_ready_and_up_to_date() -> None:
    spec = pool()
    status = pools.pool_status(
        spec,
        [],
        name="default",
        replicas=2,
        rollout=pools.Rollout(ready=2, updated=2),
        load=load(3, 5),
        generation=1,
        now=T0,
    )
    ready = {c.type: c for c in status.conditions}["Ready"]
    assert (ready.status, ready.reason, status.ready, status.backlog, status.running) == (
        "True",
        "Ready",
        "2/2",
        3,
        5,
    )
    assert status.selector == "treadle.dev/pool=default"


def test_a_rollout_in_progress_is_reconciling_and_a_foreign_deployment_stalls_the_pool() -> None:
    rolling = pools.pool_status(
        pool(), [], name="p", replicas=2, rollout=pools.Rollout(ready=2, updated=1),
        load=load(0), generation=1, now=T0,
    )  # fmt: skip
    kinds = {c.type: c.status for c in rolling.conditions}
    assert kinds == {"Ready": "False", "Reconciling": "True", "Stalled": "False"}
    foreign = pools.pool_status(
        pool(), [], name="p", replicas=1, rollout=pools.Rollout(theirs="Deployment x is not ours"),
        load=load(0), generation=1, now=T0,
    )  # fmt: skip
    assert {c.type: c.status for c in foreign.conditions}["Stalled"] == "True"
    assert foreign.message == "Deployment x is not ours"


def test_a_pool_scaled_to_zero_is_ready() -> None:
    idle = pools.pool_status(
        pool(), [], name="p", replicas=0, rollout=pools.Rollout(), load=load(0),
        generation=1, now=T0,
    )  # fmt: skip
    ready = {c.type: c for c in idle.conditions}["Ready"]
    assert (ready.status, ready.reason) == ("True", "ScaledToZero")


def test_a_pools_pods_are_restricted_tokenless_and_mount_only_its_secrets() -> None:
    spec = pool(
        image="acme/etl:1.4",
        secrets=["api-credentials"],
        env=[{"name": "LOG_LEVEL", "value": "info"}],
        slotsPerWorker=8,
        maxTaskSeconds=600,
    )
    made = pools.deployment(
        name="default", namespace="data", uid="u1", spec=spec, replicas=3, default_image="treadle"
    )
    pod = made["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert made["spec"]["replicas"] == 3
    assert made["metadata"]["ownerReferences"][0]["kind"] == "WorkerPool"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["image"] == "acme/etl:1.4"
    assert "--pool=data.default" in container["command"]
    assert "--concurrency=8" in container["command"]
    assert "--drain-seconds=600" in container["command"]
    assert pod["terminationGracePeriodSeconds"] == 600 + pools.GRACE_MARGIN_SECONDS
    assert pod["volumes"] == [{"name": "secret-0", "secret": {"secretName": "api-credentials"}}]
    mount = container["volumeMounts"][0]
    assert (mount["mountPath"], mount["readOnly"]) == (f"{pools.SECRETS_DIR}/api-credentials", True)
    redis_url = container["env"][0]
    assert redis_url["valueFrom"]["secretKeyRef"] == {
        "name": "treadle-redis",
        "key": "data.default",
    }
    assert {"name": "LOG_LEVEL", "value": "info"} in container["env"]
    strategy = made["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0  # a rollout never takes workers away first


def test_a_pool_may_not_set_treadles_own_variables_nor_have_a_dotted_name() -> None:
    _, problems = admission.admit_pool({"env": [{"name": "TREADLE_REDIS_URL", "value": "x"}]}, "p")
    assert problems == [
        "spec.env[0].name: 'TREADLE_REDIS_URL': names starting with TREADLE_ are Treadle's own"
    ]
    _, problems = admission.admit_pool({}, "a.b")
    assert problems == [
        "metadata.name: a WorkerPool's name must be a DNS label (lower case, digits, '-'; no dots)"
    ]
    _, problems = admission.admit_pool({"env": [{"name": "X", "valueFrom": {}}]}, "p")
    assert problems
    assert problems[0].startswith("spec.env[0].valueFrom: ")


def test_the_pool_is_chosen_when_the_workflow_is_admitted_and_kept_for_the_run() -> None:
    raw = {"tasks": [{"name": "a", "command": {"args": ["true"]}}]}
    first = admission.admit(raw, {}, generation=1, now=T0, workflow={}, default_pool=True).status
    assert first is not None
    assert first.worker_pool == "default"
    # Resumed later, with the pool gone: the run keeps the pool it was admitted on.
    again = admission.admit(raw, first.wire(), generation=1, now=T0, workflow={})
    assert again.current is not None
    assert again.current.worker_pool == "default"


def test_a_moved_redis_rolls_the_pools_workers_without_showing_its_url() -> None:
    def made(digest: str) -> dict[str, Any]:
        return pools.deployment(
            name="p", namespace="n", uid="u", spec=pool(), replicas=1, default_image="i",
            url_digest=digest,
        )  # fmt: skip

    before, after = made("aaaa"), made("bbbb")
    template = before["spec"]["template"]["metadata"]["annotations"]
    assert template == {pools.URL_ANNOTATION: "aaaa"}
    assert before["spec"]["template"] != after["spec"]["template"]  # a new ReplicaSet
