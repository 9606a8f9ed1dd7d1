"""`mm4watch --help` start-up (target: well under 500 ms), against a bare Python start.

Usage: python bench/startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, command, report  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    medians = alternate(
        {
            "bare python start": command([sys.executable, "-c", "pass"]),
            "mm4watch --help": command([sys.executable, "-m", "mm4watch", "--help"]),
            "import papermill (what we avoid)": command([sys.executable, "-c", "import papermill"]),
        },
        args.rounds,
    )
    report(f"start-up (median of {args.rounds}, alternating)", medians, "bare python start")
    ok = medians["mm4watch --help"] < 0.5
    print(
        f"  mm4watch --help: {medians['mm4watch --help'] * 1000:.0f} ms (target: under 500 ms) -> {'MET' if ok else 'NOT MET'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
