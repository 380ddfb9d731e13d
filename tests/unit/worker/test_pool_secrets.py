"""A WorkerPool's workers read a header's Secret from the files the pool mounts; a workflow's
own workers from their environment.  Nothing outside the mounted directory is reachable."""

from __future__ import annotations

from pathlib import Path

import pytest

from treadle.core import messages
from treadle.worker import runners as actions

HEADER = {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}


def test_a_pool_worker_reads_the_header_from_the_mounted_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "token").write_text("Bearer s3cret\n")
    monkeypatch.setenv("TREADLE_SECRETS_DIR", str(tmp_path))
    assert actions._header_value(HEADER) == "Bearer s3cret"


def test_the_environment_wins_over_the_mount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TREADLE_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv(messages.secret_env_name("api", "token"), "from-env")
    assert actions._header_value(HEADER) == "from-env"


def test_a_secret_neither_mounted_nor_in_the_environment_fails_the_attempt_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TREADLE_SECRETS_DIR", str(tmp_path))
    with pytest.raises(actions.ActionFailed, match="key 'token' of Secret 'api'"):
        actions._header_value(HEADER)


def test_a_key_that_climbs_out_of_the_mount_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "outside").write_text("private")
    (tmp_path / "mounts").mkdir()
    monkeypatch.setenv("TREADLE_SECRETS_DIR", str(tmp_path / "mounts"))
    climbing = {"name": "A", "valueFrom": {"secretKeyRef": {"name": "..", "key": "outside"}}}
    with pytest.raises(actions.ActionFailed):
        actions._header_value(climbing)
