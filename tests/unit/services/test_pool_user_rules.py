"""A pool's Redis credentials and rights, as pure functions."""

from __future__ import annotations

import fnmatch

import pytest

from treadle.services import keys, pool_users


def test_a_pools_password_is_derived_again_the_same_and_differs_by_pool_and_secret() -> None:
    first = pool_users.password("operator-secret", "wf-a")
    assert first == pool_users.password("operator-secret", "wf-a")  # after any restart
    assert first != pool_users.password("operator-secret", "wf-b")
    assert first != pool_users.password("another-secret", "wf-a")
    assert "operator-secret" not in first
    assert len(first) == 64


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("redis://:s3cret@redis.treadle.svc:6379/0", "redis://u:p@redis.treadle.svc:6379/0"),
        (
            "rediss://admin:x@10.0.0.1/2?ssl_cert_reqs=none",
            "rediss://u:p@10.0.0.1/2?ssl_cert_reqs=none",
        ),
        ("redis://[::1]:6380", "redis://u:p@[::1]:6380"),
        ("redis://localhost", "redis://u:p@localhost"),
    ],
)
def test_the_worker_url_is_the_base_with_the_pools_user_and_password(
    base: str, expected: str
) -> None:
    assert pool_users.worker_url(base, "u", "p") == expected


def test_a_password_with_url_characters_is_quoted() -> None:
    assert pool_users.worker_url("redis://h:1/0", "u", "a@b:c/d") == "redis://u:a%40b%3Ac%2Fd@h:1/0"


def test_the_operators_password_comes_from_its_url() -> None:
    assert pool_users.operator_password("redis://:pw@h:1/0") == "pw"
    assert pool_users.operator_password("redis://treadle:pw@h:1/0") == "pw"
    assert pool_users.operator_password("redis://h:1/0") is None


def test_a_pools_rules_start_from_nothing_and_allow_only_its_keys_and_commands() -> None:
    rules = pool_users.acl_rules("wf-1", "team-a", "p")
    assert rules[:2] == ["reset", "on"]
    assert rules[2].startswith("#")
    assert rules[2] != "#p"  # the password only hashed
    assert [r for r in rules if r.startswith("~")] == [
        "~treadle:pool:wf-1:*",
        "~treadle:breaker:team-a:*",
        "~treadle:bucket:team-a:*",
    ]
    assert "-@all" in rules
    allowed = {r[1:] for r in rules if r.startswith("+")}
    assert allowed == set(pool_users.WORKER_COMMANDS)
    assert not allowed & {"eval", "script|load", "keys", "scan", "flushall", "flushdb", "config"}


def test_every_key_a_pools_worker_touches_is_under_its_patterns() -> None:
    """The worker's keys, made by keys.*, are what the pool's ACL patterns cover."""
    patterns = keys.pool_key_patterns("wf-1", "team-a")
    touched = [
        keys.tasks_stream("wf-1"),
        keys.results_stream("wf-1"),
        keys.dead_letters("wf-1"),
        keys.pool_rejected("wf-1"),
        keys.done_hash("wf-1", "uid"),
        keys.outputs_index("wf-1", "uid"),
        keys.output_key("wf-1", "uid", "t", 3, 2),
        keys.breaker_hash("team-a", "http://api:80"),
        keys.bucket_hash("team-a", "task:t"),
    ]
    for key in touched:
        assert any(fnmatch.fnmatchcase(key, p) for p in patterns), key
    assert not any(fnmatch.fnmatchcase(keys.results_stream("wf-2"), p) for p in patterns)
    assert not any(fnmatch.fnmatchcase(keys.breaker_hash("team-b", "t"), p) for p in patterns)
