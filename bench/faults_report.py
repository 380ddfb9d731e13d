"""Renders the fault suite's counts (bench/results/faults.json, written by `make faults`) as a
table on stdout and bench/results/faults.png."""

from __future__ import annotations

import json

from common import RESULTS, pyplot

COLUMNS = (
    ("case", "case"),
    ("faults", "faults"),
    ("expected", "tasks"),
    ("completed", "completed"),
    ("lost", "lost"),
    ("executions", "executions"),
    ("re_run", "re-run"),
    ("finished_twice", "ran to end twice"),
    ("duplicate_effects", "effects twice"),
    ("recovery_seconds", "recovery s"),
    ("seconds", "run s"),
    ("clean", "clean"),
)


def main() -> None:
    report = json.loads((RESULTS / "faults.json").read_text())
    cases = report["cases"]
    print(f"fault suite, {report['scale']} scale, {report['machine']}\n")
    print("| " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for case in cases:
        print("| " + " | ".join(str(case[key]) for key, _ in COLUMNS) + " |")
    for case in cases:
        for note in case["notes"]:
            print(f"- {case['case']}: {note}")
    plt = pyplot()
    figure, (counts, seconds) = plt.subplots(1, 2, figsize=(11, 4))
    names = [c["case"] for c in cases]
    width = 0.25
    for offset, (key, colour) in enumerate(
        (("lost", "#e03131"), ("re_run", "#f08c00"), ("duplicate_effects", "#7048e8"))
    ):
        counts.bar(
            [i + (offset - 1) * width for i in range(len(cases))],
            [c[key] for c in cases],
            width,
            label=key.replace("_", " "),
            color=colour,
        )
    counts.set_xticks(range(len(cases)), names, rotation=35, ha="right")
    counts.set_title("tasks lost / re-run / effects made twice")
    counts.legend()
    seconds.bar(names, [c["recovery_seconds"] for c in cases], color="#1c7ed6")
    seconds.set_xticks(range(len(cases)), names, rotation=35, ha="right")
    seconds.set_title("longest recovery after a fault (s)")
    figure.tight_layout()
    figure.savefig(RESULTS / "faults.png", dpi=120)


if __name__ == "__main__":
    main()
