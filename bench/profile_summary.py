"""Summarises a py-spy raw profile (`py-spy record -f raw`): the share of samples in each
function, inclusive and self, as bench/results/profile-*.txt shows them.

    .venv/bin/python bench/profile_summary.py PROFILE.raw [--top 40]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def summary(raw: Path, top: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = [frame.split(" (")[0] for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    lines = [f"{total} samples", "", "inclusive:"]
    lines += [f"{n / total * 100:5.1f}% {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{n / total * 100:5.1f}% {name}" for name, n in own.most_common(top // 2)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    print(summary(args.raw, args.top), end="")


if __name__ == "__main__":
    main()
