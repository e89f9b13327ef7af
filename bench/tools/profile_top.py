"""Top frames of a py-spy raw profile, by self and by inclusive share of the samples (not a test).

Usage: .venv/bin/python bench/tools/profile_top.py out.txt [how many=30]

profile_processor.py --summary groups the frames we care about; this lists whatever is
largest, so a cost nobody expected shows up too.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path


def main(path: str, top: int) -> None:
    total = 0
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = stack.split(";")[1:]  # the first is the thread
        if frames:
            own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    print(f"samples {total}")
    print("== top self frames ==")
    for frame, samples in own.most_common(top):
        print(f"{100 * samples / total:5.1f}%  {frame}")
    print("== top inclusive frames ==")
    for frame, samples in inclusive.most_common(top + 10):
        print(f"{100 * samples / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30)
