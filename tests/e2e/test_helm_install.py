"""`helm install` with the chart's defaults into a local cluster of its own: two operator
replicas run as pods (each with its Redis sidecar, on its own pod address), one takes the
leader Lease, the API server reaches the webhook through its Service, workers reach Redis
through its Service name, and a workflow runs; `helm upgrade` (adding a default WorkerPool, on
which the workflow then runs) and `helm uninstall` behave."""

from __future__ import annotations

import json
from pathlib import Path

from support.chart import CHART, IMAGE, RELEASE, SYSTEM, Helm, leader, own_cluster
from support.cluster import REPO


def test_helm_install_with_defaults_upgrade_and_uninstall_on_a_local_cluster(
    tmp_path: Path,
) -> None:
    with own_cluster(tmp_path) as cluster:
        helm = Helm(cluster)
        helm.install()
        pods = json.loads(cluster.kubectl("get", "pods", "-n", SYSTEM, "-o", "json").stdout)
        # Two replicas, each with its own address and its Redis sidecar on the same ports.
        assert len(pods["items"]) == 2
        assert len({p["status"]["podIP"] for p in pods["items"]}) == 2
        assert all(p["status"]["podIP"].startswith("10.244.") for p in pods["items"])
        leading = leader(cluster)
        [pod] = [p for p in pods["items"] if p["metadata"]["name"] == leading]
        # The init container made the Redis password; no render of the chart carries one.
        [secret_name] = [
            c["args"][2] for c in pod["spec"]["initContainers"] if c["name"] == "redis-password"
        ]
        password = cluster.get("secret", secret_name, SYSTEM)["data"]["password"]

        cluster.kubectl("apply", "-f", str(REPO / "examples" / "01-hello.yaml"), "-n", "default")
        cluster.wait("twf/hello", "default", "condition=Ready", timeout_seconds=180)
        cyclic = {
            "apiVersion": "treadle.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "loop"},
            "spec": {"tasks": [
                {"name": "a", "dependsOn": ["b"], "command": {"args": ["true"]}},
                {"name": "b", "dependsOn": ["a"], "command": {"args": ["true"]}},
            ]},
        }  # fmt: skip
        refused = cluster.kubectl(
            "apply", "-n", "default", "-f", "-", input=json.dumps(cyclic), check=False
        )
        assert "dependency cycle a -> b -> a" in refused.stderr

        # The upgrade also makes the `default` WorkerPool of namespace `default`: the in-cluster
        # operator keeps its Deployment (its RBAC allows it), and hello runs on it.
        helm("upgrade", RELEASE, str(CHART), "-n", SYSTEM, "--wait", "--timeout=180s",
             *IMAGE, "--set", "verbose=true", "--set", "pools.namespaces={default}")  # fmt: skip
        cluster.wait("twp/default", "default", "condition=Ready", timeout_seconds=180)
        cluster.kubectl("delete", "twf", "hello", "-n", "default")
        cluster.kubectl("apply", "-f", str(REPO / "examples" / "01-hello.yaml"), "-n", "default")
        cluster.wait("twf/hello", "default", "condition=Ready", timeout_seconds=180)
        assert cluster.get("twf", "hello", "default")["status"]["workerPool"] == "default"
        # The leader's log API, reached by the API server through the chart's Service.
        cluster.wait("apiservice/v1alpha1.logs.treadle.dev", "default", "condition=Available", 120)
        said = cluster.plugin("logs", "hello", "shout", "-n", "default").stdout
        assert said == "HELLO WORLD\n"
        assert cluster.get("secret", secret_name, SYSTEM)["data"]["password"] == password

        helm("uninstall", RELEASE, "-n", SYSTEM, "--wait", "--timeout=120s")
        left = cluster.kubectl("get", "deploy,pods", "-n", SYSTEM, "-o", "name").stdout
        assert "deployment" not in left
        # No registration is left behind to fail every client's discovery.
        gone = cluster.kubectl("get", "apiservice/v1alpha1.logs.treadle.dev", check=False)
        assert "NotFound" in gone.stderr
        # CRDs (and so users' objects) stay, as Helm keeps what it installed from crds/.
        assert cluster.get("twf", "hello", "default")["status"]["phase"] == "Succeeded"
