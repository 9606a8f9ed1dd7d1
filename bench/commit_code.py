"""What running the commit's code costs: a run of a commit (its project files exported through
an index of its own, as a commit run and a rerun get them) against a run of the same notebook
from the work tree, on the local executor, in a project of 200 code files and a 2 MB data file.

Both pay a kernel's start; what differs is the export (git read-tree and checkout-index into a
temporary folder, removed after the run). Printed as a ratio to the work tree's run.

Usage: python bench/commit_code.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, command, notebook, report  # noqa: E402


def project(root: Path) -> tuple[Path, str]:
    (root / "notebooks").mkdir(parents=True)
    (root / "src").mkdir()
    for n in range(200):
        (root / "src" / f"m{n}.py").write_text(f"VALUE_{n} = {n}\n" * 40)
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"\0" * (2 << 20))
    (root / ".gitignore").write_text("results/\n.mm4/\n")
    (root / "mm4.toml").write_text('[run]\nexecutor = "local"\n')
    (root / "notebooks" / "one.ipynb").write_text(notebook("# mm4: remote\nimport sys\nprint(1)"))
    for argv in (["init", "-q"], ["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "b"]):
        subprocess.run(["git", *argv], cwd=root, check=True)
    done = subprocess.run(
        [sys.executable, "-m", "mm4watch", "run", "notebooks/one.ipynb"], cwd=root, capture_output=True, text=True
    )
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    return root, json.loads((run_dir / "run.json").read_text())["id"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, clean = project(Path(tmp) / "proj")
        medians = alternate(
            {
                "work tree (mm4watch run)": command(
                    [sys.executable, "-m", "mm4watch", "run", "notebooks/one.ipynb"], cwd=root
                ),
                "the commit's code (mm4watch rerun of a commit's run)": command(
                    [sys.executable, "-m", "mm4watch", "rerun", "--", clean], cwd=root
                ),
            },
            args.rounds,
        )
    report(f"a one-cell notebook, local, 200 code files (median of {args.rounds}, alternating)", medians,
           "work tree (mm4watch run)")  # fmt: skip
    extra = medians["the commit's code (mm4watch rerun of a commit's run)"] - medians["work tree (mm4watch run)"]
    print(f"  the commit's code costs {extra:+.2f} s per run here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
