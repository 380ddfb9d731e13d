"""`helm install` into a local cluster of its own: the operator runs as a pod (with its Redis
sidecar, both run by the node agent, on the service account's token), takes the leader Lease,
registers its webhook, and runs a workflow; `helm upgrade` and `helm uninstall` behave."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from support.cluster import CLUSTER, REPO, Cluster
from support.redis_server import free_port

CHART = REPO / "charts" / "treadle"
RELEASE, SYSTEM = "treadle", "treadle-system"


def local_values() -> list[str]:
    """What a cluster whose pods share the node's loopback network needs."""
    values = {
        "replicas": 1,
        "bindAddress": "127.0.0.1",
        "healthPort": free_port(),
        "livenessPort": free_port(),
        "metrics.port": free_port(),
        "webhook.port": free_port(),
        "webhook.reachBy": "address",
        "redis.port": free_port(),
        "redis.workerHost": "127.0.0.1",
        "updateStrategy.type": "Recreate",
        "updateStrategy.rollingUpdate": "null",
        "image.repository": "treadle",
        "image.tag": "dev",
    }
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def test_helm_install_upgrade_and_uninstall_on_a_local_cluster(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["TREADLE_STATE_DIR"] = str(tmp_path / "state")
    tools = subprocess.run(
        [str(REPO / "hack" / "tools.sh"), "--print"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run([str(CLUSTER), "up"], env=env, check=True, timeout=300)
    cluster = Cluster(tmp_path / "state" / "kubeconfig")

    def helm(*args: str) -> str:
        result = subprocess.run(
            [f"{tools}/helm", f"--kubeconfig={cluster.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"helm {args[0]}: {result.stderr}"
        return result.stdout

    try:
        helm("install", RELEASE, str(CHART), "-n", SYSTEM, "--create-namespace", "--wait",
             "--timeout=180s", *local_values())  # fmt: skip
        pods = json.loads(cluster.kubectl("get", "pods", "-n", SYSTEM, "-o", "json").stdout)
        [pod] = pods["items"]
        assert pod["metadata"]["labels"]["treadle.dev/leader"] == "true"
        lease = cluster.get("lease", "treadle-operator", SYSTEM)
        assert lease["spec"]["holderIdentity"] == pod["metadata"]["name"]
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

        helm("upgrade", RELEASE, str(CHART), "-n", SYSTEM, "--wait", "--timeout=180s",
             *local_values(), "--set", "verbose=true")  # fmt: skip
        cluster.kubectl("delete", "twf", "hello", "-n", "default")
        cluster.kubectl("apply", "-f", str(REPO / "examples" / "01-hello.yaml"), "-n", "default")
        cluster.wait("twf/hello", "default", "condition=Ready", timeout_seconds=180)
        assert cluster.get("secret", secret_name, SYSTEM)["data"]["password"] == password

        helm("uninstall", RELEASE, "-n", SYSTEM, "--wait", "--timeout=120s")
        left = cluster.kubectl("get", "deploy,pods", "-n", SYSTEM, "-o", "name").stdout
        assert "deployment" not in left
        # CRDs (and so users' objects) stay, as Helm keeps what it installed from crds/.
        assert cluster.get("twf", "hello", "default")["status"]["phase"] == "Succeeded"
    finally:
        subprocess.run([str(CLUSTER), "down"], env=env, timeout=120)
