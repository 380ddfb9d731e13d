"""The node agent's pure helpers: $(VAR) expansion, restart policy, back-off, field refs,
where a container's program is."""

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

import containers
import nodeagent
import podenv
import volumes


def test_expansion_replaces_known_names_and_keeps_unknown_ones() -> None:
    assert podenv.expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"


@pytest.mark.parametrize(
    ("policy", "exit_code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 1, False),
    ],
)
def test_restart_follows_the_pod_restart_policy(policy: str, exit_code: int, restart: bool) -> None:
    assert containers.restart_wanted(policy, exit_code) is restart


def test_crash_loop_backoff_doubles_up_to_the_cap() -> None:
    assert [containers.backoff_seconds(n, 1, 8) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]


def test_field_refs_resolve_pod_metadata() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "x"}},
        "spec": {"nodeName": "node"},
    }
    assert [
        podenv.field_value(pod, f)
        for f in (
            "metadata.name",
            "metadata.namespace",
            "metadata.uid",
            "status.podIP",
            "metadata.labels['app']",
        )
    ] == ["p", "n", "u", "127.0.0.1", "x"]


async def test_a_full_node_leaves_pods_pending_and_binds_them_as_room_is_made() -> None:
    agent = object.__new__(nodeagent.Agent)
    agent.max_pods, agent.runners, agent.bound, agent.waiting = 2, {}, set(), {}
    agent.chores = set()
    bound: list[str] = []

    async def bind(pod: dict[str, Any]) -> None:
        bound.append(pod["metadata"]["uid"])

    agent.bind = bind  # type: ignore[method-assign]
    for uid in ("a", "b", "c"):
        agent.admit({"metadata": {"uid": uid}})
    await asyncio.gather(*agent.chores)  # bindings run beside the watch
    assert bound == ["a", "b"]
    assert list(agent.waiting) == ["c"]
    agent.bound.discard("a")  # its runner started and finished
    agent.room_made()
    await asyncio.gather(*agent.chores)
    assert bound == ["a", "b", "c"]
    assert not agent.waiting


async def test_a_startup_probe_gates_the_container_and_its_failure_restarts_it() -> None:
    """The startup probe was called without an argument it required: any pod with one
    crashed its probe task."""
    import probes

    for command, started in ((["true"], True), (["false"], False)):
        probe = {"exec": {"command": command}, "failureThreshold": 1}
        container = containers.ContainerState({"name": "c", "startupProbe": probe})
        restarts: list[bool] = []

        async def restart(restarts: list[bool] = restarts) -> None:
            restarts.append(True)

        target = probes.Target({}, "/")
        await probes.run(container, target, None, changed=lambda: None, restart=restart, pod="p")
        assert (container.started, container.ready, bool(restarts)) == (
            started,
            started,
            not started,
        )


def test_a_program_under_a_mount_is_found_in_its_volume(tmp_path: Path) -> None:
    """Argo's emissary: the init container copies argoexec into an emptyDir mounted at
    /var/run/argo, and the main container runs /var/run/argo/argoexec."""
    volume = tmp_path / "var-run-argo"
    volume.mkdir()
    (volume / "argoexec").write_text("#!/bin/sh\n")
    (volume / "argoexec").chmod(0o755)
    (volume / "data").write_text("not a program")
    mounts = [(str(volume), "/var/run/argo", False), (str(tmp_path), "/var", True)]
    assert volumes.program("/var/run/argo/argoexec", None, mounts) == str(volume / "argoexec")
    assert volumes.program("/var/run/argo/data", None, mounts) is None  # not executable
    assert volumes.program("/var/run/argo/missing", None, mounts) is None
    assert volumes.program("/var/run/argo/../argo/argoexec", None, mounts) == str(
        volume / "argoexec"
    )
    assert volumes.program("sh", os.environ["PATH"], mounts) is not None  # on the machine
    assert volumes.program("/bin/sh", None, []) == "/bin/sh"


def test_a_missing_sub_path_is_made_a_directory_as_the_kubelet_does(tmp_path: Path) -> None:
    """Argo's wait container mounts subPath "0" of an empty emptyDir at /tmp."""
    container = {"volumeMounts": [{"name": "tmp", "mountPath": "/tmp", "subPath": "0"}]}
    assert volumes.mounts_for(container, {"tmp": tmp_path}) == [
        (str(tmp_path / "0"), "/tmp", False)
    ]
    assert (tmp_path / "0").is_dir()
