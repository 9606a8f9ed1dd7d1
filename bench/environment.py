"""What recording the kernel's environment (environment.txt) costs a run: a one-cell notebook on the
local executor with ``[run] environment = true`` (the default) against the same run with it off,
alternating (target: at most 1.10x, i.e. the listing runs beside papermill, not after it).

Usage: python bench/environment.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, command, local_project, report  # noqa: E402

TARGET = 1.10


def project(root: Path, record: bool) -> Path:
    return local_project(root, f'[run]\nexecutor = "local"\nenvironment = {str(record).lower()}\n')


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        on, off = project(Path(tmp) / "on", True), project(Path(tmp) / "off", False)
        run = [sys.executable, "-m", "mm4watch", "run", "notebooks/one.ipynb"]
        medians = alternate(
            {"environment off": command(run, cwd=off), "environment.txt recorded": command(run, cwd=on)}, args.rounds
        )
        listed = [len((d / "environment.txt").read_text().splitlines()) for d in (on / "results").iterdir()]
        missing = sum(1 for d in (off / "results").iterdir() if (d / "environment.txt").exists())
    report(f"a one-cell notebook, local (median of {args.rounds}, alternating)", medians, "environment off")
    ratio = medians["environment.txt recorded"] / medians["environment off"]
    extra = (medians["environment.txt recorded"] - medians["environment off"]) * 1000
    print(f"  {min(listed)}-{max(listed)} lines per environment.txt; {missing} written with it off")
    ok = ratio <= TARGET and missing == 0 and min(listed) > 2
    print(f"  ratio {ratio:.3f} ({extra:+.0f} ms per run; target <= {TARGET}) -> {'MET' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
