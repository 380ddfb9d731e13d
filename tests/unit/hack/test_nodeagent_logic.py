"""The node agent's pure helpers: $(VAR) expansion, restart policy, back-off, field refs."""

import pytest

import nodeagent


def test_expansion_replaces_known_names_and_keeps_unknown_ones() -> None:
    assert nodeagent.expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"


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
    assert nodeagent.restart_wanted(policy, exit_code) is restart


def test_crash_loop_backoff_doubles_up_to_the_cap() -> None:
    assert [nodeagent.backoff_seconds(n, 1, 8) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]


def test_field_refs_resolve_pod_metadata() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "x"}},
        "spec": {"nodeName": "node"},
    }
    assert [
        nodeagent.field_value(pod, f)
        for f in (
            "metadata.name",
            "metadata.namespace",
            "metadata.uid",
            "status.podIP",
            "metadata.labels['app']",
        )
    ] == ["p", "n", "u", "127.0.0.1", "x"]
