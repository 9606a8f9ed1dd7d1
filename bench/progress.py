"""The live progress line costs a run nothing measurable.

A 20-cell notebook run with `mm4watch run` with its stderr on a terminal (the live
line, redrawn four times a second) against the same run piped (one plain line per
phase), alternating; target: ratio at most 1.02.

Usage: python bench/progress.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import code, notebook_json


def on_terminal(argv: list[str], cwd: Path) -> float:
    master, slave = os.openpty()
    t0 = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, stdin=slave, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    while True:
        try:
            if not os.read(master, 65536):
                break
        except OSError:
            break
    child.wait()
    os.close(master)
    return time.perf_counter() - t0


def piped(argv: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=cwd, capture_output=True, check=True)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mm4-bench-progress-") as tmp:
        project = Path(tmp)
        (project / "notebooks").mkdir()
        (project / "mm4.toml").write_text('[run]\nexecutor = "local"\n')
        cells = [code("# mm4: remote\nimport time")] + [
            code(f"time.sleep(0.1)\nvalue_{i} = sum(range(10000))\nprint('cell', {i})") for i in range(1, 20)
        ]
        (project / "notebooks" / "twenty.ipynb").write_text(notebook_json(*cells))
        argv = [sys.executable, "-m", "mm4watch", "run", "notebooks/twenty.ipynb"]
        piped(argv, project)  # warm-up
        tty, plain = [], []
        for _ in range(args.rounds):
            tty.append(on_terminal(argv, project))
            plain.append(piped(argv, project))
    ratio = statistics.median(tty) / statistics.median(plain)
    print(f"20-cell notebook, median of {args.rounds} alternating runs")
    print(f"  on a terminal (live line)   {statistics.median(tty):.2f} s")
    print(f"  piped (plain lines)         {statistics.median(plain):.2f} s   ratio {ratio:.3f} (target <= 1.02)")
    print("target met" if ratio <= 1.02 else "target NOT met")
    return 0 if ratio <= 1.02 else 1


if __name__ == "__main__":
    sys.exit(main())
