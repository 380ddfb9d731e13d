"""The committed tool modules build with nothing left to resolve: with the network off
(GOPROXY=off) and go.mod read-only, Go finds every package of every tool from go.mod, go.sum
and the module cache.  A go.mod that lacks a requirement, or a go.sum that lacks a hash, fails
here instead of on a new user's first `make run`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "hack" / "tools"


def go_env(**extra: str) -> dict[str, str]:
    # The caller's module and build caches stay (GOMODCACHE, GOCACHE); what decides resolution
    # is set here.
    env = {k: v for k, v in os.environ.items() if k not in ("GOPROXY", "GONOPROXY", "GOPRIVATE")}
    env.update(GOTOOLCHAIN="local", GOWORK="off", GOFLAGS="-mod=readonly", CGO_ENABLED="0")
    env.update(extra)
    return env


def tool_packages(module_dir: Path) -> list[str]:
    text = (module_dir / "go.mod").read_text()
    block = re.search(r"^tool \(\n(.*?)^\)", text, re.M | re.S)
    if block:
        return block.group(1).split()
    tools = re.findall(r"^tool (\S+)$", text, re.M)
    if not tools and (module_dir / "main.go").exists():  # a command of our own (coredns)
        tools = [re.search(r"^module (\S+)$", text, re.M).group(1)]  # type: ignore[union-attr]
    return tools


@pytest.fixture(scope="module")
def go() -> str:
    found = shutil.which("go")
    if found is None:
        raise AssertionError("go is not on PATH: the local cluster's tools are built with it")
    return found


@pytest.mark.parametrize("module", ["kubernetes", "helm", "coredns"])
def test_every_tool_resolves_offline_from_the_committed_go_sum(go: str, module: str) -> None:
    directory = TOOLS / module
    packages = tool_packages(directory)
    assert packages, f"hack/tools/{module}/go.mod names no tool"
    command = [go, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", *packages]
    # First fill the module cache with what go.sum records (a no-op once tools.sh has built);
    # -mod=readonly makes any module that go.mod and go.sum do not already vouch for an error.
    warm = subprocess.run(
        command, cwd=directory, env=go_env(), capture_output=True, text=True, timeout=900
    )
    assert warm.returncode == 0, warm.stderr[-4000:]
    offline = subprocess.run(
        command, cwd=directory, env=go_env(GOPROXY="off"), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert offline.returncode == 0, offline.stderr[-4000:]
    assert set(packages) <= set(offline.stdout.split())
