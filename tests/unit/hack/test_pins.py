"""The set-up installs exactly what was tested: the committed Go modules match
hack/versions.env, and requirements.lock pins every Python package pyproject.toml asks for."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[3]
TOOLS = REPO / "hack" / "tools"
LOCK = REPO / "requirements.lock"


def versions_env() -> dict[str, str]:
    pairs = re.findall(r"^([A-Z_]+)=(\S+)$", (REPO / "hack" / "versions.env").read_text(), re.M)
    return dict(pairs)


def required(module_dir: Path) -> dict[str, str]:
    """`require` lines of a go.mod, module -> version (block and single-line forms)."""
    text = (module_dir / "go.mod").read_text()
    return dict(re.findall(r"^\s*(?:require\s+)?([a-z0-9.\-/]+\.[a-z]+/\S*)\s+(v\S+)", text, re.M))


def replaced(module_dir: Path) -> dict[str, str]:
    text = (module_dir / "go.mod").read_text()
    return dict(re.findall(r"^\s*(\S+) => \S+ (v\S+)$", text, re.M))


def locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)$", LOCK.read_text(), re.M)
    return {canonicalize_name(name): version for name, version in pins}


def test_kubernetes_module_is_at_the_pinned_version() -> None:
    assert (
        required(TOOLS / "kubernetes")["k8s.io/kubernetes"] == versions_env()["KUBERNETES_VERSION"]
    )


def test_every_staging_module_is_replaced_by_its_published_tag() -> None:
    minor = versions_env()["KUBERNETES_VERSION"].removeprefix("v1.")
    replaces = replaced(TOOLS / "kubernetes")
    assert replaces, "hack/tools/kubernetes/go.mod replaces no staging module"
    assert {version for version in replaces.values()} == {f"v0.{minor}"}
    for module in ("k8s.io/api", "k8s.io/apiserver", "k8s.io/client-go"):
        assert module in replaces


def test_helm_module_is_at_the_pinned_version() -> None:
    helm = versions_env()["HELM_VERSION"]
    assert required(TOOLS / "helm")[f"helm.sh/helm/{helm.split('.')[0]}"] == helm


def test_coredns_module_is_at_the_pinned_version() -> None:
    coredns = versions_env()["COREDNS_VERSION"]
    assert required(TOOLS / "coredns")["github.com/coredns/coredns"] == coredns


def test_kube_proxy_is_built_from_the_control_planes_module() -> None:
    assert "k8s.io/kubernetes/cmd/kube-proxy" in (TOOLS / "kubernetes" / "go.mod").read_text()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("kubernetes", "k8s.io/kubernetes"),
        ("helm", "helm.sh/helm/v4"),
        ("coredns", "github.com/coredns/coredns"),
    ],
)
def test_each_tool_module_commits_its_go_sum(module: str, name: str) -> None:
    go_sum = (TOOLS / module / "go.sum").read_text().splitlines()
    # Each required module has its source hash recorded, so a cold build checks what it downloads.
    hashed = {line.split()[0] for line in go_sum if not line.split()[1].endswith("/go.mod")}
    assert name in hashed


def pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    specs = [*project["dependencies"], *build]
    for extra in project["optional-dependencies"].values():
        specs.extend(extra)
    return [Requirement(spec) for spec in specs]


def test_the_lock_pins_every_requirement_within_its_range() -> None:
    pins = locked()
    for requirement in pyproject_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is in pyproject.toml but not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {requirement.name}=={pins[name]}, "
            f"outside pyproject.toml's {requirement.specifier}: run make lock"
        )


def test_the_lock_pins_the_installer_itself() -> None:
    assert "pip" in locked()


def test_the_environment_running_the_tests_was_installed_from_the_lock() -> None:
    """make venv installs with the lock as constraints; a package at another version means the
    environment was set up some other way, or the lock changed without a reinstall."""
    pins = locked()
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()
    }
    drift = {
        name: (installed[name], version)
        for name, version in pins.items()
        if name in installed and installed[name] != version
    }
    assert drift == {}
