"""What the benchmarks share: medians of alternating runs, and the tests' own helpers
(``tests/support.py``: notebooks, the rig's fake Mini) so benchmarks build what tests build."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _folder in (REPO, REPO / "tests"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from support import code, mini_ssh_options, notebook_json, rig_values  # noqa: E402

__all__ = [
    "ADDED",
    "STACK",
    "alternate",
    "command",
    "local_project",
    "mini_ssh_options",
    "notebook",
    "report",
    "rig",
    "timed",
]

# the dependency benchmarks (deps.py, builds.py): a data-science stack, and a package added per round
STACK = ["papermill", "ipykernel", "numpy", "pandas", "scikit-learn", "matplotlib"]
ADDED = [
    "tabulate",
    "toolz",
    "cachetools",
    "sortedcontainers",
    "xmltodict",
    "humanize",
    "pyfiglet",
]  # none a dependency of STACK: one per round (and the warm-up)


def rig() -> dict[str, str]:
    """The fake Mini's address; exits with what to do when the rig is not up."""
    values = rig_values()
    if values is None:
        sys.exit("no rig: run `bash tests/rig/up.sh` first")
    return values


def notebook(source: str, parameters: str | None = None) -> str:
    """A notebook of one code cell (after a parameters cell when given), as the tests write them."""
    cells = [code(parameters, tags=["parameters"])] if parameters is not None else []
    return notebook_json(*cells, code(source))


def local_project(root: Path, toml: str = '[run]\nexecutor = "local"\n') -> Path:
    """A project at ``root`` (``toml`` its mm4.toml) with one committed one-cell notebook, notebooks/one.ipynb."""
    (root / "notebooks").mkdir(parents=True)
    (root / "mm4.toml").write_text(toml)
    (root / "notebooks" / "one.ipynb").write_text(notebook("# mm4: remote\nprint(1)"))
    for argv in (["init", "-q"], ["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "b"]):
        subprocess.run(["git", *argv], cwd=root, check=True)
    return root


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(candidates: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each candidate, run in turn so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            samples[name].append(timed(fn))
    return {name: statistics.median(values) for name, values in samples.items()}


def command(argv: Sequence[str], **kwargs: Any) -> Callable[[], object]:
    return lambda: subprocess.run(list(argv), check=True, capture_output=True, **kwargs)


def report(title: str, medians: dict[str, float], baseline: str) -> None:
    print(title)
    for name, seconds in medians.items():
        ratio = seconds / medians[baseline]
        print(f"  {name:<34} {seconds * 1000:9.1f} ms   ratio {ratio:5.2f} x {baseline}")
