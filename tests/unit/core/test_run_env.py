"""A SyncJob run is told its slot and the fencing tokens of the locks it runs under."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from treadle.api.syncjobs import SyncJobSpec
from treadle.core import runbodies, syncadmission

SLOT = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
JOB = SyncJobSpec.model_validate(
    {
        "schedule": "0 2 * * *",
        "template": {
            "spec": {
                "initContainers": [{"name": "prep", "image": "x"}],
                "containers": [
                    {"name": "sync", "image": "x", "env": [{"name": "A", "value": "1"}]}
                ],
            }
        },
    }
)


def test_every_container_gets_the_slot_and_the_fencing_tokens() -> None:
    locks = [("treadle-pipeline-orders", 7), ("treadle-table-warehouse.orders", 3)]
    pod = runbodies.run_pod(
        runbodies.NewRun(
            job="orders", namespace="ns", uid="u", spec=JOB, name="orders-1", slot=SLOT, locks=locks
        )
    )
    for container in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
        env = {v["name"]: v["value"] for v in container["env"]}
        assert env["TREADLE_SLOT"] == "2026-12-03T02:00:00Z"
        assert env["TREADLE_FENCING_TOKEN"] == "7"
        assert json.loads(env["TREADLE_FENCING_TOKENS"]) == dict(locks)
    assert pod["spec"]["containers"][0]["env"][0] == {"name": "A", "value": "1"}


def test_a_run_cannot_be_told_another_token_by_its_spec() -> None:
    forged = {
        "schedule": "0 2 * * *",
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "s",
                        "image": "x",
                        "env": [{"name": "TREADLE_FENCING_TOKEN", "value": "99"}],
                    }
                ]
            }
        },
    }
    assert any("TREADLE_" in p for p in syncadmission.syncjob_problems(forged))
