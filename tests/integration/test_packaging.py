"""What the image installs (`pip install .`, as the Dockerfile does) is complete: the package
and its three entry points work from a plain, non-editable install."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from support.cluster import REPO


def test_a_plain_install_gives_the_operator_worker_and_kubectl_plugin(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(target), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert (target / "treadle" / "api" / "workflows.py").exists()
    assert (target / "treadle" / "services" / "scripts" / "finish.lua").exists()  # Lua files too
    assert (target / "treadle" / "examples" / "01-hello.yaml").exists()  # kubectl treadle example
    web = target / "treadle" / "plugin" / "web"  # kubectl treadle ui serves these as they are
    for page in ("index.html", "app.js", "app.css", "vendor/dagre-3.1.3.min.js"):
        assert (web / page).exists(), page
    dependencies = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{dependencies}"}
    env.pop("KUBECONFIG", None)
    for command, expected in (
        (["treadle", "version"], "0."),
        (["treadle", "worker", "--help"], "--pool"),
        (["treadle", "operator", "--help"], "--leader-election-namespace"),
        (["kubectl-treadle", "--help"], "dlq"),
        (["kubectl-treadle", "example", "hello"], "name: hello"),
        (["kubectl-treadle", "ui", "--help"], "--port"),
        (["kubectl-treadle", "logs", "--help"], "--attempt"),
    ):
        script = target / "bin" / command[0]
        ran = subprocess.run(
            [sys.executable, str(script), *command[1:]], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert expected in ran.stdout
        assert str(target) in subprocess.run(
            [sys.executable, "-c", "import treadle; print(treadle.__file__)"],
            env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    listing = "from treadle.services import scripts; print(sorted(scripts.SCRIPTS))"
    loaded = subprocess.run(
        [sys.executable, "-c", listing], env=env, cwd=tmp_path, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    assert "'finish'" in loaded
    assert "'reap'" in loaded
