"""Steps a run's machine takes for mm4watch, in Python: the native executor calls them over ssh as
``python3 -m mm4watch.far.there STEP --arg value ...`` (the far side on ``PYTHONPATH``), each
answering with one line of JSON. Arguments travel, never shell programs.

Part of the far side (``executors.far_side.FAR_SIDE``): Python 3.9 and newer, standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PIN_NAME = ".mm4-venv"  # in a run's folder there: the environment it runs in, never pruned under it
READY_NAME = ".ready"  # in an environment: it was built whole
PROBE_NAME = "env.json"  # in an environment: what its interpreter said of itself
REQUIREMENTS_NAME = "requirements.in"  # in an environment: the requirements.txt it was built from


def pinned(runs: Path) -> set[str]:
    """The environments the runs still on this machine name (``runs/<key>/.mm4-venv``)."""
    names = set()
    for pin in runs.glob(f"*/{PIN_NAME}"):
        try:
            names.add(pin.read_text().strip())
        except OSError:
            continue  # a run ending meanwhile
    return names


def newest_first(folder: Path) -> list[Path]:
    """The folders in ``folder``, the most recently changed first (as ``ls -t``)."""
    found = []
    for entry in folder.iterdir() if folder.is_dir() else ():
        try:
            if entry.is_dir() and not entry.is_symlink():
                found.append((entry.stat().st_mtime, entry.name, entry))
        except OSError:
            continue
    return [path for _, _, path in sorted(found, key=lambda t: (t[0], t[1]), reverse=True)]


def prune(venvs: Path, key: str, keep: int, keep_also: set[str]) -> list[str]:
    """Environments beyond the newest ``keep`` (``key``, the one this run uses, counted among them),
    removed, except those in ``keep_also`` (pinned by a run still there). The names removed."""
    others = [path for path in newest_first(venvs) if path.name != key]
    removed = []
    for path in others[max(0, keep - 1) :]:
        if path.name in keep_also:
            continue
        remove_tree(path)
        removed.append(path.name)
    return removed


def remove_tree(path: Path) -> None:
    """``rm -rf``: read-only folders inside (a package's) made writable on the way."""

    def writable_then_again(function: Callable[..., Any], name: str, _: Any) -> None:
        try:
            os.chmod(os.path.dirname(name), stat.S_IRWXU)
            os.chmod(name, stat.S_IRWXU)
        except OSError:
            pass
        try:
            function(name)
        except FileNotFoundError:
            pass

    handler = "onexc" if sys.version_info >= (3, 12) else "onerror"  # onerror is deprecated from 3.12
    options: dict[str, Any] = {handler: writable_then_again}
    shutil.rmtree(path, **options)


def read_ready(venv: Path) -> dict[str, Any] | None:
    """What a whole environment's interpreter said of itself; None when it is not there or half-built."""
    try:
        if not (venv / READY_NAME).is_file():
            return None
        said = json.loads((venv / PROBE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return said if isinstance(said, dict) else None


def earlier_requirements(venvs: Path) -> str | None:
    """The requirements.txt the newest whole environment here was built from (its packages are in the
    machine's uv cache); None when there is none."""
    for venv in newest_first(venvs):
        if (venv / READY_NAME).is_file():
            try:
                return (venv / REQUIREMENTS_NAME).read_text()
            except OSError:
                continue
    return None


def environment(base: str, key: str, keep: int, run: str) -> dict[str, Any]:
    """Before a run: pin environment ``key`` for run ``run``, prune the others past ``keep`` (pinned
    ones stay), and say whether ``key`` is ready (``ready``: what its interpreter said) or, when it is
    not, what the newest one was built from (``earlier``)."""
    root = Path(base)
    venvs = root / "venvs"
    venvs.mkdir(parents=True, exist_ok=True)
    run_dir = root / "runs" / run
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / PIN_NAME).write_text(key + "\n")
    removed = prune(venvs, key, keep, pinned(root / "runs"))
    ready = read_ready(venvs / key)
    if ready is not None:
        return {"ready": ready, "removed": removed}
    return {"ready": None, "earlier": earlier_requirements(venvs), "removed": removed}


STEPS: dict[str, Callable[..., dict[str, Any]]] = {"environment": environment}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m mm4watch.far.there")
    sub = parser.add_subparsers(dest="step", required=True)
    env = sub.add_parser("environment")
    env.add_argument("--base", required=True)
    env.add_argument("--key", required=True)
    env.add_argument("--keep", type=int, required=True)
    env.add_argument("--run", required=True)
    args = vars(parser.parse_args(argv))
    step = STEPS[args.pop("step")]
    print(json.dumps(step(**args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
