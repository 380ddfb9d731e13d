"""The Helm chart: lint-clean, CRDs identical to crds/, every object accepted by the API server,
RBAC granting exactly what the operator uses, and every pod Treadle creates admitted by a
namespace that enforces the Pod Security Standards *restricted* profile."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from support.cluster import REPO, Cluster
from treadle.api import policies
from treadle.api.syncjobs import SyncJobSpec
from treadle.api.workflows import Workers
from treadle.core import runbodies, workerpods

CHART = REPO / "charts" / "treadle"
SERVICE_ACCOUNT = "treadle"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    tools = subprocess.run(
        [str(REPO / "hack" / "tools.sh"), "--print"], capture_output=True, text=True, check=True
    ).stdout.strip()
    result = subprocess.run([f"{tools}/helm", *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def render(namespace: str, *values: str) -> str:
    return helm("template", "treadle", str(CHART), "--namespace", namespace, *values).stdout


def test_helm_lint_is_clean() -> None:
    linted = helm("lint", str(CHART), "--strict")
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout
    assert "[WARNING]" not in linted.stdout
    assert "[ERROR]" not in linted.stdout


def test_the_chart_ships_the_crds_of_crds_dir_unchanged() -> None:
    """And the applied-by policy beside them is among its templates (helm upgrades those)."""
    shipped = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    shipped[policies.FILE] = (CHART / "templates" / policies.FILE).read_text()
    generated = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    assert shipped == generated


def test_bad_values_are_refused_naming_the_value() -> None:
    refused = helm("template", "t", str(CHART), "--set", "replicas=0", check=False)
    assert refused.returncode != 0
    assert "/replicas" in refused.stderr
    typo = helm(
        "template", "t", str(CHART), "--set", "redis.externalUrl=localhost:6379", check=False
    )
    assert "/redis/externalUrl" in typo.stderr


@pytest.mark.parametrize(
    "values",
    [
        (),
        ("--set", "redis.sidecar.enabled=false", "--set", "redis.externalUrl=redis://r:6379/0"),
        ("--set", "networkPolicy.enabled=true", "--set", "replicas=3"),
    ],
    ids=["defaults", "external-redis", "network-policy"],
)
def test_every_rendered_object_is_accepted_by_the_api_server(
    crds: Cluster, namespace: str, values: tuple[str, ...]
) -> None:
    documents = [d for d in yaml.safe_load_all(render(namespace, *values)) if d]
    applied = apply_documents(crds, documents, namespace, "--dry-run=server")
    kinds = {line.split("/")[0] for line in applied.splitlines()}
    assert {
        "deployment.apps",
        "service",
        "serviceaccount",
        "clusterrole.rbac.authorization.k8s.io",
    } <= kinds


GRANTED = [
    ("get", "workflows.treadle.dev"),
    ("watch", "syncjobs.treadle.dev"),
    ("patch", "workflows.treadle.dev"),
    ("delete", "workflows.treadle.dev"),
    ("patch", "workflows.treadle.dev/status"),
    ("patch", "syncjobs.treadle.dev/status"),
    ("create", "pods"),
    ("delete", "pods"),
    ("list", "pods"),
    ("create", "secrets"),
    ("create", "events"),
    ("create", "leases.coordination.k8s.io"),
    ("update", "leases.coordination.k8s.io"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("patch", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("watch", "workerpools.treadle.dev"),
    ("patch", "workerpools.treadle.dev/status"),
    ("create", "deployments.apps"),
    ("patch", "deployments.apps"),
    ("get", "deployments.apps"),
    ("create", "apiservices.apiregistration.k8s.io"),
    ("create", "subjectaccessreviews.authorization.k8s.io"),
]
REFUSED = [
    ("get", "secrets"),
    ("patch", "secrets"),
    ("list", "secrets"),
    ("delete", "secrets"),
    ("create", "pods/exec"),
    ("delete", "deployments.apps"),
    ("update", "deployments.apps"),
    ("create", "workerpools.treadle.dev"),
    ("update", "workflows.treadle.dev"),
    ("update", "workflows.treadle.dev/status"),
    ("delete", "leases.coordination.k8s.io"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("list", "nodes"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("delete", "apiservices.apiregistration.k8s.io"),
    ("list", "configmaps"),
]


def apply_documents(
    cluster: Cluster, documents: list[dict[str, Any]], namespace: str, *flags: str
) -> str:
    """Applies the documents, each in its own namespace (the release's unless it names one:
    the log API's RoleBinding is in kube-system)."""
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        where = document.get("metadata", {}).get("namespace") or namespace
        by_namespace.setdefault(where, []).append(document)
    applied = []
    for where, items in by_namespace.items():
        listing = {"apiVersion": "v1", "kind": "List", "items": items}
        applied.append(
            cluster.kubectl("apply", *flags, "-n", where, "-f", "-", input=json.dumps(listing))
        )
    return "".join(result.stdout for result in applied)


def shared(document: dict[str, Any]) -> bool:
    """Outside the test's namespace: named for the test, deleted after it."""
    if document["kind"] in ("ClusterRole", "ClusterRoleBinding"):
        return True
    return bool(document.get("metadata", {}).get("namespace") == "kube-system")


def delete_shared(cluster: Cluster, rbac: list[dict[str, Any]]) -> None:
    for document in rbac:
        if shared(document):
            where = document["metadata"].get("namespace")
            cluster.kubectl(
                "delete", document["kind"], document["metadata"]["name"], "--ignore-not-found",
                *(["-n", where] if where else []),
            )  # fmt: skip


def cluster_scoped_for(namespace: str, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chart's RBAC with cluster-scoped (and kube-system) names suffixed, so tests in
    parallel namespaces do not collide."""
    kinds = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    rbac = [d for d in documents if d["kind"] in kinds]
    for document in rbac:
        if shared(document):
            document["metadata"]["name"] += f"-{namespace}"
        if document["kind"] == "ClusterRoleBinding":
            document["roleRef"]["name"] += f"-{namespace}"
    return rbac


def can(cluster: Cluster, verb: str, resource: str, who: str, namespace: str) -> str:
    """kubectl auth can-i; `resource/sub` asks about a subresource (not an object's name)."""
    kind, _, sub = resource.partition("/")
    extra = [f"--subresource={sub}"] if sub else []
    answer = cluster.kubectl(
        "auth", "can-i", verb, kind, *extra, "--as", who, "-n", namespace, check=False
    )
    return answer.stdout.strip()


def test_the_operator_account_may_do_what_the_operator_does_and_nothing_more(
    crds: Cluster, namespace: str
) -> None:
    rbac = cluster_scoped_for(namespace, [d for d in yaml.safe_load_all(render(namespace)) if d])
    apply_documents(crds, rbac, namespace)
    operator = f"system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}"
    editor_binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "alice-edits"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": f"treadle-editor-{namespace}"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
    }  # fmt: skip
    viewer_binding = json.loads(json.dumps(editor_binding).replace("alice", "bob"))
    viewer_binding["roleRef"]["name"] = f"treadle-viewer-{namespace}"
    for binding in (editor_binding, viewer_binding):
        crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(binding))
    try:
        for verb, resource in GRANTED + REFUSED:
            expected = "yes" if (verb, resource) in GRANTED else "no"
            assert can(crds, verb, resource, operator, namespace) == expected, f"{verb} {resource}"
        # Secrets by name only: the workers' URL Secret, and the chart's Redis password.
        for verb, secret, expected in [
            ("patch", "treadle-redis", "yes"),
            ("patch", "other", "no"),
            ("get", "treadle-redis", "yes"),
            ("get", "other", "no"),
        ]:
            answer = crds.kubectl(
                "auth", "can-i", verb, f"secret/{secret}", "--as", operator, "-n", namespace,
                check=False,
            ).stdout.strip()  # fmt: skip
            assert answer == expected, f"{verb} secret/{secret}"
        assert can(crds, "create", "workflows.treadle.dev", "alice", namespace) == "yes"
        assert can(crds, "update", "leases.coordination.k8s.io", "alice", namespace) == "yes"
        assert can(crds, "get", "secrets", "alice", namespace) == "no"
        assert can(crds, "list", "syncjobs.treadle.dev", "bob", namespace) == "yes"
        assert can(crds, "create", "workflows.treadle.dev", "bob", namespace) == "no"
        # (kubectl auth can-i cannot name a resource of an aggregated API that is not up.)
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": "bob",
                "resourceAttributes": {"namespace": namespace, "verb": "get",
                                       "group": "logs.treadle.dev", "resource": "workflowlogs"},
            },
        }  # fmt: skip
        answer = crds.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review))
        assert json.loads(answer.stdout)["status"]["allowed"] is True
        # The log API reads which certificate the API server's front proxy presents.
        reads = crds.kubectl(
            "auth", "can-i", "get", "configmap/extension-apiserver-authentication",
            "--as", operator, "-n", "kube-system", check=False,
        ).stdout.strip()  # fmt: skip
        assert reads == "yes"
        for verb, expected in [("patch", "yes"), ("delete", "no")]:
            answer = crds.kubectl(
                "auth", "can-i", verb, "apiservice/v1alpha1.logs.treadle.dev", "--as", operator,
                check=False,
            ).stdout.strip()  # fmt: skip
            assert answer == expected, f"{verb} the log API's APIService"
        other = crds.kubectl(
            "auth", "can-i", "patch", "apiservice/v1beta1.metrics.k8s.io", "--as", operator,
            check=False,
        ).stdout.strip()  # fmt: skip
        assert other == "no"
    finally:
        delete_shared(crds, rbac)


def test_a_restricted_namespace_admits_every_pod_treadle_creates(
    crds: Cluster, namespace: str
) -> None:
    crds.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    crds.kubectl("create", "serviceaccount", SERVICE_ACCOUNT, "-n", namespace)
    worker = workerpods.workflow_pod(
        workflow_name="wf", namespace=namespace, uid="u", pool="wf-u", index=0,
        spec=Workers(), default_image="treadle:dev", secret_refs=[("api", "token")],
        metrics_port=9091,
    )  # fmt: skip
    job = SyncJobSpec.model_validate(
        {
            "schedule": "0 * * * *",
            "template": {"spec": {"containers": [{"name": "s", "image": "x"}]}},
        }
    )
    run = runbodies.run_pod(
        runbodies.NewRun(
            job="j", namespace=namespace, uid="u", spec=job, name="j-1", slot=datetime.now(UTC),
            locks=[],
        )
    )  # fmt: skip
    operators = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "operator", "labels": d["spec"]["template"]["metadata"]["labels"]},
            "spec": d["spec"]["template"]["spec"],
        }
        for d in yaml.safe_load_all(render(namespace))
        if d and d["kind"] == "Deployment"
    ]
    lax = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "lax"},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }
    refused = crds.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(lax), check=False
    )
    assert "violates PodSecurity" in refused.stderr  # the namespace does enforce the profile
    for pod in [worker, run, *operators]:
        pod["metadata"].pop("ownerReferences", None)
        admitted = crds.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(pod),
            check=False,
        )  # fmt: skip
        assert admitted.returncode == 0, f"{pod['metadata']['name']}: {admitted.stderr}"
        assert "would violate" not in admitted.stderr, admitted.stderr


def test_renders_carry_no_password_and_never_differ(namespace: str) -> None:
    """SPEC, Deployment: the Redis password survives `helm template` / Argo CD renders.  The
    chart renders none: an init container makes the Secret once, in the cluster."""
    first, second = render(namespace), render(namespace)
    assert first == second
    documents = [d for d in yaml.safe_load_all(first) if d]
    assert "Secret" not in {d["kind"] for d in documents}
    [deployment] = [d for d in documents if d["kind"] == "Deployment"]
    [init] = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["args"] == ["ensure-secret", namespace, "treadle-redis"]
    # Given a Secret of one's own, nothing is made.
    given = render(namespace, "--set", "redis.existingSecret=mine")
    [deployment] = [d for d in yaml.safe_load_all(given) if d and d["kind"] == "Deployment"]
    assert "initContainers" not in deployment["spec"]["template"]["spec"]


def test_the_network_policy_is_on_and_admits_only_treadles_pods_to_redis(namespace: str) -> None:
    documents = [d for d in yaml.safe_load_all(render(namespace, "--set",
                 "watchNamespaces={team-a,team-b}")) if d]  # fmt: skip
    [policy] = [d for d in documents if d["kind"] == "NetworkPolicy"]
    [redis, _] = policy["spec"]["ingress"]
    workers, pool_workers, operator = redis["from"]
    for selected in (workers, pool_workers):
        assert selected["namespaceSelector"]["matchExpressions"][0]["values"] == [
            "team-a", "team-b", namespace,
        ]  # fmt: skip
        assert selected["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    [workflow_label] = workers["podSelector"]["matchExpressions"]
    [pool_label] = pool_workers["podSelector"]["matchExpressions"]
    assert (workflow_label["key"], pool_label["key"]) == (
        "treadle.dev/workflow",
        "treadle.dev/pool",
    )
    assert operator["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert "namespaceSelector" not in operator


def test_with_client_auth_the_webhook_answers_only_the_named_client(namespace: str) -> None:
    rendered = render(namespace, "--set", "webhook.clientAuth.caSecret=apiserver-client-ca")
    [deployment] = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert "--webhook-client-ca=/etc/treadle/webhook-client/ca.crt" in args
    assert "--webhook-client-name=kube-apiserver-webhook-client" in args
    assert {"name": "webhook-client-ca", "secret": {"secretName": "apiserver-client-ca"}} in pod[
        "volumes"
    ]
    plain = render(namespace)
    assert "--webhook-client-ca" not in plain


def test_pool_users_are_on_unless_turned_off_for_a_redis_without_acls(namespace: str) -> None:
    def operator_env(*values: str) -> dict[str, Any]:
        rendered = render(namespace, *values)
        [deployment] = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
        [operator] = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                      if c["name"] == "operator"]  # fmt: skip
        return {variable["name"]: variable.get("value") for variable in operator["env"]}

    assert "TREADLE_POOL_USERS" not in operator_env()
    assert operator_env("--set", "redis.poolUsers=false")["TREADLE_POOL_USERS"] == "off"


def test_with_cert_manager_the_webhook_certificate_is_issued_and_mounted(namespace: str) -> None:
    rendered = [
        d
        for d in yaml.safe_load_all(render(namespace, "--set", "webhook.certManager.enabled=true"))
        if d
    ]
    certificates = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Certificate"}
    serving = certificates["treadle-webhook"]["spec"]
    assert f"treadle-webhook.{namespace}.svc" in serving["dnsNames"]
    assert serving["issuerRef"] == {"name": "treadle-webhook-ca", "kind": "Issuer"}
    assert certificates["treadle-webhook-ca"]["spec"]["isCA"] is True
    [deployment] = [d for d in rendered if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    operator = pod["containers"][0]
    assert "--webhook-cert-dir=/etc/treadle/webhook" in operator["args"]
    assert {"name": "webhook-tls", "secret": {"secretName": "treadle-webhook-tls"}} in pod[
        "volumes"
    ]
    given = render(namespace, "--set", "webhook.certManager.enabled=true",
                   "--set", "webhook.certManager.issuerRef.name=corp-ca",
                   "--set", "webhook.certManager.issuerRef.kind=ClusterIssuer")  # fmt: skip
    kinds = [d["kind"] for d in yaml.safe_load_all(given) if d]
    assert kinds.count("Certificate") == 1
    assert "Issuer" not in kinds
    assert "kind: ClusterIssuer" in given


def test_with_watch_namespaces_the_operator_is_granted_nothing_outside_them(
    crds: Cluster, namespace: str
) -> None:
    """Issue #13, problem 6: pods and Secrets were granted cluster-wide even with
    watchNamespaces."""
    documents = [
        d
        for d in yaml.safe_load_all(render(namespace, "--set", f"watchNamespaces={{{namespace}}}"))
        if d
    ]
    rbac = cluster_scoped_for(namespace, documents)
    rbac += [d for d in documents if d["kind"] in ("Role", "RoleBinding")]
    cluster_role = next(
        d for d in rbac if d["kind"] == "ClusterRole" and "operator" in d["metadata"]["name"]
    )
    granted = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert granted.isdisjoint({"pods", "secrets", "leases", "workflows", "events"})
    apply_documents(crds, rbac, namespace)
    operator = f"system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}"
    try:
        assert can(crds, "create", "pods", operator, namespace) == "yes"
        assert can(crds, "patch", "workflows.treadle.dev/status", operator, namespace) == "yes"
        assert can(crds, "create", "pods", operator, "default") == "no"
        assert can(crds, "create", "secrets", operator, "default") == "no"
        assert can(crds, "list", "workflows.treadle.dev", operator, "default") == "no"
        assert can(crds, "list", "customresourcedefinitions.apiextensions.k8s.io", operator,
                   namespace) == "yes"  # fmt: skip
    finally:
        delete_shared(crds, rbac)
