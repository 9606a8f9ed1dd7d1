"""A one-cell notebook on the local executor (`mm4watch run`, provenance and all) against
`papermill in.ipynb out.ipynb` by hand, in the same environment (target: at most 0.8x the hand time).

Both pay a kernel's start; what differs is what each process imports first. Where JupyterLab is
installed, jsonschema's rfc3987-syntax backend is there too, and `import papermill` builds its Earley
parsers; the runner leaves that backend out (mm4watch/core/lean_imports.py). The benchmark says
whether the backend is installed here: without it, both sides are spared and the ratio says less.

Usage: python bench/local.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, command, local_project, report  # noqa: E402

TARGET = 0.8


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    heavy = importlib.util.find_spec("rfc3987_syntax") is not None
    with tempfile.TemporaryDirectory() as tmp:
        root = local_project(Path(tmp) / "proj")
        nb = root / "notebooks" / "one.ipynb"
        papermill = Path(sys.executable).with_name("papermill")
        medians = alternate(
            {
                "papermill by hand": command([str(papermill), str(nb), str(Path(tmp) / "out.ipynb")], cwd=root),
                "mm4watch run (local)": command([sys.executable, "-m", "mm4watch", "run", str(nb)], cwd=root),
            },
            args.rounds,
        )
        runs = len(list((root / "results").iterdir()))
    report(f"a one-cell notebook, local (median of {args.rounds}, alternating)", medians, "papermill by hand")
    ratio = medians["mm4watch run (local)"] / medians["papermill by hand"]
    print(f"  rfc3987-syntax installed here (as beside JupyterLab): {'yes' if heavy else 'no'}; {runs} runs recorded")
    ok = ratio <= TARGET
    print(f"  ratio {ratio:.2f} (target <= {TARGET}) -> {'MET' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
