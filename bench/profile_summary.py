"""The top frames of a py-spy profile in its `raw` (collapsed stacks) format, as a
Markdown table: the share of samples a function is on the stack (inclusive) and at its
top (self). For docs/perf/, instead of committing flame graphs.

    py-spy record --format raw -o app.raw -- python -m bench.application
    python -m bench.profile_summary app.raw --top 25
"""

import argparse
import re
from collections import Counter

FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """`save (eventsourcing/application.py:123)` → `save (eventsourcing/application.py)`."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "wt-throughput/", "/lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['function']} ({file})"


def summarize(path: str) -> tuple[int, Counter, Counter]:
    inclusive, own, total = Counter(), Counter(), 0
    with open(path) as raw:
        for line in raw:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            samples = int(count)
            frames = [frame_name(frame) for frame in stack.split(";")]
            total += samples
            own[frames[-1]] += samples
            for name in set(frames):
                inclusive[name] += samples
    return total, inclusive, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--grep", default="", help="only frames whose name contains this")
    args = parser.parse_args()
    total, inclusive, own = summarize(args.raw)
    print(f"{total} samples\n\n| inclusive | self | frame |\n| ---: | ---: | --- |")
    shown = [(name, n) for name, n in inclusive.most_common() if args.grep in name][:args.top]
    for name, samples in shown:
        print(f"| {100 * samples / total:.1f} % | {100 * own[name] / total:.1f} % | `{name}` |")


if __name__ == "__main__":
    main()
