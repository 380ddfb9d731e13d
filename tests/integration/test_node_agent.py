"""The local node agent runs pods as local processes and reports them like a kubelet."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from support.cluster import Cluster, state_dir


def pod(name: str, script: str, *, workdir: Path, restart: str = "Never", **spec: Any) -> str:
    container = {
        "name": "main",
        "image": "ignored",
        "command": ["sh", "-c", script],
        "workingDir": str(workdir),
    }
    container.update(spec.pop("container", {}))
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": restart, "containers": [container], **spec},
    }
    return json.dumps(body)


def process_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def run(cluster: Cluster, namespace: str, manifest: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)


def status_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.get("pod", name, namespace)["status"]


def test_node_agent_runs_a_pod_to_completion_and_reports_success(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    run(cluster, namespace, pod("ok", "echo hello from the agent", workdir=tmp_path))
    cluster.wait("pod/ok", namespace, "jsonpath={.status.phase}=Succeeded")
    terminated = status_of(cluster, namespace, "ok")["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert cluster.kubectl("logs", "-n", namespace, "ok").stdout == "hello from the agent\n"


def test_node_agent_reports_the_exit_code_of_a_failed_container(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    run(cluster, namespace, pod("fails", "exit 3", workdir=tmp_path))
    cluster.wait("pod/fails", namespace, "jsonpath={.status.phase}=Failed")
    status = status_of(cluster, namespace, "fails")["containerStatuses"][0]
    assert (status["state"]["terminated"]["exitCode"], status["restartCount"]) == (3, 0)


def test_a_failing_container_is_restarted_per_restart_policy_on_failure(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    script = "if [ -f tried ]; then exit 0; fi; touch tried; exit 1"
    run(cluster, namespace, pod("retry", script, workdir=tmp_path, restart="OnFailure"))
    cluster.wait("pod/retry", namespace, "jsonpath={.status.phase}=Succeeded")
    status = status_of(cluster, namespace, "retry")["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["state"]["terminated"]["exitCode"] == 0


def test_deleting_a_pod_delivers_sigterm_to_its_container(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    script = (
        "trap 'echo term > got-term; exit 0' TERM; echo up > up; while true; do sleep 0.1; done"
    )
    run(cluster, namespace, pod("term", script, workdir=tmp_path))
    cluster.wait("pod/term", namespace, "jsonpath={.status.phase}=Running")
    cluster.kubectl("delete", "pod", "term", "-n", namespace, "--timeout=60s")
    assert (tmp_path / "got-term").read_text() == "term\n"


def test_deletion_waits_the_grace_period_then_kills(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    script = "trap '' TERM; echo $$$$ > pid; while true; do sleep 0.1; done"
    manifest = pod("stubborn", script, workdir=tmp_path, terminationGracePeriodSeconds=3)
    run(cluster, namespace, manifest)
    cluster.wait("pod/stubborn", namespace, "jsonpath={.status.phase}=Running")
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "stubborn", "-n", namespace, "--timeout=60s")
    elapsed = time.monotonic() - started
    assert 3 <= elapsed < 15
    assert not process_alive(int((tmp_path / "pid").read_text()))


def test_environment_comes_from_values_secrets_config_maps_and_field_refs(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl(
        "create", "secret", "generic", "creds", "-n", namespace, "--from-literal=token=s3cret"
    )
    cluster.kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=mode=fast")
    env = [
        {"name": "PLAIN", "value": "plain"},
        {"name": "DERIVED", "value": "$(PLAIN)-derived"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    script = "env > env.txt"
    run(cluster, namespace, pod("env", script, workdir=tmp_path, container={"env": env}))
    cluster.wait("pod/env", namespace, "jsonpath={.status.phase}=Succeeded")
    seen = dict(
        line.split("=", 1)
        for line in (tmp_path / "env.txt").read_text().splitlines()
        if "=" in line
    )
    reported = cluster.get("pod", "env", namespace)
    uid = reported["metadata"]["uid"]
    assert {
        k: seen[k]
        for k in ("PLAIN", "DERIVED", "TOKEN", "MODE", "POD_NAME", "POD_NS", "POD_UID", "POD_IP")
    } == {
        "PLAIN": "plain",
        "DERIVED": "plain-derived",
        "TOKEN": "s3cret",
        "MODE": "fast",
        "POD_NAME": "env",
        "POD_NS": namespace,
        "POD_UID": uid,
        "POD_IP": reported["status"]["podIP"],  # its own address on the pod network
    }


def test_commands_resolve_on_a_path_that_includes_the_project_environment(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    run(cluster, namespace, pod("cli", "treadle version > version.txt", workdir=tmp_path))
    cluster.wait("pod/cli", namespace, "jsonpath={.status.phase}=Succeeded")
    assert (tmp_path / "version.txt").read_text().strip()


def test_init_containers_run_first_and_sidecars_run_beside_the_main_container(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    init = {
        "name": "init",
        "image": "ignored",
        "command": ["sh", "-c", "echo done > init-done"],
        "workingDir": str(tmp_path),
    }
    sidecar = {
        "name": "sidecar",
        "image": "ignored",
        "restartPolicy": "Always",
        "command": ["sh", "-c", "echo $$$$ > sidecar-pid; while true; do sleep 0.1; done"],
        "workingDir": str(tmp_path),
    }
    script = "test -f init-done && test -f sidecar-pid && echo both > seen"
    manifest = pod("with-init", script, workdir=tmp_path, initContainers=[init, sidecar])
    run(cluster, namespace, manifest)
    cluster.wait("pod/with-init", namespace, "jsonpath={.status.phase}=Succeeded")
    assert (tmp_path / "seen").read_text() == "both\n"
    # The sidecar is stopped before the pod's phase becomes final.
    sidecar = status_of(cluster, namespace, "with-init")["initContainerStatuses"][1]
    assert "terminated" in sidecar["state"]
    assert not process_alive(int((tmp_path / "sidecar-pid").read_text()))


def test_a_pod_is_ready_only_when_its_readiness_probe_passes(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    probe = {"exec": {"command": ["test", "-f", str(tmp_path / "ready")]}, "periodSeconds": 1}
    script = "sleep 1; touch ready; while true; do sleep 0.1; done"
    run(
        cluster,
        namespace,
        pod("probed", script, workdir=tmp_path, container={"readinessProbe": probe}),
    )
    cluster.wait("pod/probed", namespace, "condition=Ready")
    assert (tmp_path / "ready").exists()


def test_when_a_container_ends_every_process_it_started_ends_with_it(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """As in a real container runtime: even a process in its own session does not outlive it."""
    script = "setsid sleep 300 & echo $! > child.pid; sleep 0.5"
    run(cluster, namespace, pod("parent", script, workdir=tmp_path))
    cluster.wait("pod/parent", namespace, "jsonpath={.status.phase}=Succeeded")
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 10
    while process_alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(child)


def test_volumes_are_mounted_where_the_container_asks_and_the_token_is_the_pods(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=mode=fast")
    cluster.kubectl("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=pw=s3")
    account = "/var/run/secrets/kubernetes.io/serviceaccount"
    script = (
        f"cat /etc/settings/mode /etc/creds/pw {account}/namespace > {tmp_path}/seen; "
        f"wc -c < {account}/token > {tmp_path}/token-bytes; "
        f"test -f {account}/ca.crt && touch /scratch/ok && ls /scratch > {tmp_path}/scratch"
    )
    volumes = [
        {"name": "settings", "configMap": {"name": "settings"}},
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    mounts = [
        {"name": "settings", "mountPath": "/etc/settings", "readOnly": True},
        {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
        {"name": "scratch", "mountPath": "/scratch"},
    ]
    manifest = pod("mounted", script, workdir=tmp_path, volumes=volumes,
                   container={"volumeMounts": mounts})  # fmt: skip
    run(cluster, namespace, manifest)
    cluster.wait("pod/mounted", namespace, "jsonpath={.status.phase}=Succeeded")
    assert (tmp_path / "seen").read_text() == f"fasts3{namespace}"
    assert int((tmp_path / "token-bytes").read_text()) > 100
    assert (tmp_path / "scratch").read_text() == "ok\n"
    assert not Path("/scratch/ok").exists()  # the mount was the container's alone
    # As with a kubelet, an ended pod's volumes go; the rest of its directory (its logs) goes
    # with the pod object.
    uid = cluster.kubectl("get", "pod/mounted", "-n", namespace, "-o", "jsonpath={.metadata.uid}")
    kept = state_dir() / "agent" / "pods" / f"{namespace}_mounted_{uid.stdout}"
    assert gone_soon(kept / "volumes")
    assert (kept / "main").is_dir()
    cluster.kubectl("delete", "pod/mounted", "-n", namespace, "--wait=true")
    assert gone_soon(kept)


def gone_soon(path: Path) -> bool:
    for _ in range(100):
        if not path.exists():
            return True
        time.sleep(0.1)
    return False
