"""hack/cluster is idempotent and `down` leaves no process behind (on a private second cluster)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.cluster import CLUSTER, KUBECTL, REPO, Cluster, host_address
from support.conditions import condition

COMPONENTS = (
    "etcd", "kube-apiserver", "kube-controller-manager", "node-agent", "kube-proxy", "coredns"
)  # fmt: skip


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def private_state(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return {**env, "TREADLE_STATE_DIR": str(tmp_path / "state")}


def cluster_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLUSTER), *args], env=env, capture_output=True, text=True, timeout=180
    )


def test_up_twice_reports_the_running_cluster_and_down_leaves_no_process(
    private_state: dict[str, str], tmp_path: Path
) -> None:
    first = cluster_command(private_state, "up")
    try:
        assert first.returncode == 0, first.stderr
        state = Path(private_state["TREADLE_STATE_DIR"])
        pids = [int((state / "run" / f"{c}.pid").read_text().split()[0]) for c in COMPONENTS]
        assert all(alive(pid) for pid in pids)
        second = cluster_command(private_state, "up")
        assert "already running" in second.stderr
        assert cluster_command(private_state, "status").returncode == 0
        nodes = subprocess.run(
            [str(KUBECTL), f"--kubeconfig={state / 'kubeconfig'}", "get", "nodes", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        )
        [node] = json.loads(nodes.stdout)["items"]
        ready = condition(node["status"], "Ready")
        assert ready["status"] == "True"
        slot = json.loads((state / "network.json").read_text())["slot"]
        assert Path(f"/run/netns/treadle{slot}-node").exists()
    finally:
        down = cluster_command(private_state, "down")
    assert down.returncode == 0
    assert not any(alive(pid) for pid in pids)
    assert cluster_command(private_state, "status").returncode == 1
    assert cluster_command(private_state, "purge").returncode == 0
    assert not Path(f"/run/netns/treadle{slot}-node").exists()
    assert subprocess.run(["ip", "link", "show", f"trd{slot}h"], capture_output=True).returncode


def test_the_api_server_listens_only_where_this_machine_reaches_it(cluster: Cluster) -> None:
    """127.0.0.1, or the cluster's host address: on a veth whose other end is the cluster's
    node namespace, so nothing off this machine routes to it."""
    server = json.loads(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    host = server.removeprefix("https://").rpartition(":")[0]
    assert host in ("127.0.0.1", host_address())
    if host != "127.0.0.1":
        route = subprocess.run(
            ["ip", "-j", "route", "get", host], capture_output=True, text=True, check=True
        )
        assert json.loads(route.stdout)[0]["dev"] == "lo"  # a local address of this machine


def test_the_kind_back_end_without_a_docker_engine_is_a_clear_skip_not_an_error() -> None:
    from support.cluster import docker_engine_missing

    if docker_engine_missing() is None:
        pytest.skip("a Docker engine is here: --cluster=kind would really run")
    target = "tests/integration/test_crds_apply.py::test_kubectl_explain_shows_the_field_docs"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "--cluster=kind", "-p", "no:cacheprovider",
         target],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout
    assert "--cluster=kind needs a Docker engine, and there is none here" in run.stdout
