"""What typed status costs the engine (issue #14: the representation was picked by measuring).

No cluster needed: it drives the pure engine in this process.

    .venv/bin/python bench/status_models.py

Two statuses, both written by the engine itself:
- a 10,000-child forEach in mid-run (1,000 results applied per call);
- 500 single tasks with 4 KiB outputs, all done, the largest status the budget allows.

For each it times, per call (the fastest of 31 runs: this 2-core VM's speed drifts by half
between runs, and the fastest is what the code costs): the engine's advance on typed status
(the CRD's pydantic models), the working copy it makes of status on every call
(`WorkflowStatus.working_copy`), the JSON the driver makes of status for each write
(`wire`), and reading status as the API server holds it (`WorkflowStatus.of`, once per
workflow the operator takes up).  Writes bench/results/status-models.json.  Run against the
dict engine (commit 2f6d339) in the same minute, the advance took 5.0 ms and 3.3 ms, the
typed one 5.1 ms and 4.0 ms.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from common import write

from treadle.api.workflows import WorkflowSpec, WorkflowStatus
from treadle.core import engine
from treadle.core.messages import TaskResult

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
WHO = engine.Identity.of(
    {"uid": "0f8c6d3e-2a41-4c8e-9a51-7d2b9e4c1a00", "name": "w", "namespace": "ns"}
)


def timed(call: Callable[[], Any], repeat: int = 31) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return round(min(samples) * 1000, 2)


def succeed(message: Any, output: Any = None) -> TaskResult:
    return TaskResult(
        message.workflow_uid, message.workflow, message.task, message.item, message.attempt,
        "succeeded", output, run=message.run,
    )  # fmt: skip


def fan_out() -> tuple[WorkflowSpec, WorkflowStatus, list[TaskResult]]:
    spec = WorkflowSpec.model_validate(
        {
            "concurrency": 10_000,
            "tasks": [
                {
                    "name": "each",
                    "forEach": "{{ range(10000) | list }}",
                    "python": {"callable": "time:time"},
                },
            ],
        }
    )
    step = engine.advance(spec, {"runGeneration": 1}, [], now=NOW, who=WHO, generation=1)
    done = [succeed(m) for m in step.enqueue[:4000]]
    step = engine.advance(spec, step.status, done, now=NOW, who=WHO, generation=1)
    # The other 6,000 children are in flight: a call applies 1,000 of their results.
    pending = engine.requeue_in_flight(spec, step.status, now=NOW, who=WHO)
    return spec, step.status, [succeed(m) for m in pending[:1000]]


def many_tasks() -> tuple[WorkflowSpec, WorkflowStatus, list[TaskResult]]:
    names = [f"task-{i:03d}-{'x' * 50}" for i in range(500)]
    spec = WorkflowSpec.model_validate(
        {"tasks": [{"name": n, "command": {"args": ["true"]}} for n in names]}
    )
    step = engine.advance(spec, {"runGeneration": 1}, [], now=NOW, who=WHO, generation=1)
    outputs = [succeed(m, {"rows": "y" * 4000}) for m in step.enqueue]
    step = engine.advance(spec, step.status, outputs, now=NOW, who=WHO, generation=1)
    return spec, step.status, []


def measure(
    name: str, built: tuple[WorkflowSpec, WorkflowStatus, list[TaskResult]]
) -> dict[str, Any]:
    spec, status, results = built
    rng = random.Random(0)
    wire = status.wire()

    def advance() -> None:
        engine.advance(spec, status, results, now=NOW, who=WHO, generation=1, rng=rng)

    return {
        "status": name,
        "status_bytes": engine.status_size(status),
        "results_per_call": len(results),
        "advance_ms": timed(advance),
        "working_copy_ms": timed(status.working_copy),
        "wire_ms": timed(status.wire),
        "read_ms": timed(lambda: WorkflowStatus.of(wire)),
    }


def main() -> None:
    rows = [
        measure("10,000-child forEach, mid-run", fan_out()),
        measure("500 tasks x 4 KiB", many_tasks()),
    ]
    heads = ("bytes", "advance ms", "copy ms", "wire ms", "read ms")
    print(f"{'status':<32} " + " ".join(f"{head:>11}" for head in heads))
    for row in rows:
        keys = ("status_bytes", "advance_ms", "working_copy_ms", "wire_ms", "read_ms")
        print(f"{row['status']:<32} " + " ".join(f"{row[key]:>11}" for key in keys))
    write("status-models", {"rows": rows})


if __name__ == "__main__":
    main()
