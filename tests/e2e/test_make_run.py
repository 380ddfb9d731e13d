"""`make run`'s script brings up a private cluster, Redis, the CRDs, the operator, the default
worker pool and the first example on it, and ends with `kubectl get treadle` answering and the
next commands printed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support.chart import CHART, IMAGE, RELEASE, SYSTEM, tools_bin
from support.cluster import CLUSTER, KUBECTL, REPO


def test_make_run_starts_everything_and_applies_the_first_example(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["TREADLE_STATE_DIR"] = str(tmp_path / "state")
    run = REPO / "hack" / "run.sh"
    try:
        started = subprocess.run(
            ["bash", str(run), "start"], env=env, capture_output=True, text=True, timeout=300
        )
        assert started.returncode == 0, started.stderr
        assert "workflow.treadle.dev/hello" in started.stdout
        assert "HELLO WORLD" in started.stdout
        assert "Try next:" in started.stdout
        # #32: Treadle's own commands first, and the other examples in a namespace of theirs.
        assert "kubectl treadle get hello" in started.stdout
        assert "kubectl treadle logs hello" in started.stdout
        assert "kubectl apply -n examples -f examples/" in started.stdout
        kubeconfig = tmp_path / "state" / "kubeconfig"
        phase = subprocess.run(
            [
                str(KUBECTL),
                f"--kubeconfig={kubeconfig}",
                "get",
                "twf",
                "hello",
                "-o",
                "jsonpath={.status.phase} {.status.workerPool}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert phase == "Succeeded default"  # it ran on the pool `make run` made
        assert "workerpool.treadle.dev/default" in started.stdout
        again = subprocess.run(
            ["bash", str(run), "start"], env=env, capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 0, again.stderr
        assert "operator already running" in again.stderr

        # #32: `make stop`, then the chart, as docs/getting-started.md says: what the local
        # operator registered goes with it, or helm refuses to install over it.
        kubectl = [str(KUBECTL), f"--kubeconfig={kubeconfig}"]
        registered = [
            "apiservice/v1alpha1.logs.treadle.dev",
            "validatingadmissionpolicy/treadle-applied-by",
        ]
        found = subprocess.run(
            [*kubectl, "get", *registered, "-o", "name"], capture_output=True, text=True
        )
        assert len(found.stdout.split()) == len(registered), found.stderr  # both there
        stopped = subprocess.run(
            ["bash", str(run), "stop"], env=env, capture_output=True, text=True, timeout=120
        )
        assert stopped.returncode == 0, stopped.stderr
        left = subprocess.run(
            [*kubectl, "get", *registered, "validatingwebhookconfiguration/treadle.dev",
             "mutatingwebhookconfiguration/treadle.dev", "-n", "treadle-system",
             "service/treadle-logs", "--ignore-not-found", "-o", "name"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert left.stdout == ""
        helm = f"{tools_bin()}/helm"
        installed = subprocess.run(
            [helm, f"--kubeconfig={kubeconfig}", "install", RELEASE, str(CHART), "-n", SYSTEM,
             "--create-namespace", *IMAGE],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr
        assert "STATUS: deployed" in installed.stdout
    finally:
        subprocess.run(["bash", str(run), "stop"], env=env, timeout=120)
        subprocess.run([str(CLUSTER), "down"], env=env, timeout=120)
    assert not (tmp_path / "state" / "run" / "operator.pid").exists()
