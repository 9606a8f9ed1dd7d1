"""mm4watch rerun RUN: execute a past run's exact input again.

The notebook is rebuilt from the run's commit plus its saved ``source.patch``
and checked against the recorded sha256; the parameters and executor are the
same, and container executors use the run's image when the engine still has it.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from ..core import config
from ..core.errors import EXIT_NOTEBOOK_FAILED, EXIT_OK, Mm4Error, UsageError
from ..core.git import rebuild
from ..results.records import PATCH_NAME, RunRecord
from ..results.store import History
from ..run.pipeline import RunRequest, run_notebook


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run id, unique id prefix or notebook name (its latest run)")
    parser.add_argument(
        "--same-environment",
        action="store_true",
        help="build the environment again from the run's environment.txt (every package at its version), "
        "when the image or the venv it ran in is gone",
    )


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    record, run_dir = History(cfg.results_dir, cfg.state_dir).find(args.run)
    sha = (record.commit or {}).get("sha")
    patch_path = run_dir / PATCH_NAME
    patch = patch_path.read_text() if patch_path.exists() else None
    if record.commit is None:
        raise Mm4Error(f"{record.id} ran outside a git repository: its exact input cannot be rebuilt")
    try:
        content = rebuild(cfg.root, sha, record.notebook, patch)
    except (Mm4Error, ValueError) as exc:
        raise Mm4Error(f"cannot rebuild the input of {record.id}: {exc}") from None
    if hashlib.sha256(content).hexdigest() != record.source.get("sha256"):
        raise Mm4Error(f"the rebuilt input of {record.id} does not match what it ran (sha256 differs); nothing was run")
    requirements = _pinned(record, run_dir) if args.same_environment else None
    request = RunRequest(
        notebook=cfg.root / record.notebook,
        parameters=dict(record.parameters),
        executor=record.executor.get("name"),
        content=content,
        commit_sha=sha,
        patch=patch,
        image=record.executor.get("image"),
        rerun_of=record.id,
        requirements=requirements,
    )
    new, new_dir = run_notebook(cfg, request, say=lambda line: print(line, file=sys.stderr))
    print(new_dir)
    return EXIT_OK if new.status == "succeeded" else EXIT_NOTEBOOK_FAILED


def _pinned(record: RunRecord, run_dir: Path) -> bytes:
    """The run's environment.txt as the requirements.txt of its rerun: every package it had, at its version."""
    from ..results.environment import read

    if record.executor.get("type") == "local":
        raise UsageError(
            "--same-environment builds the environment again on a Mini (a venv) or an engine (an image); the local "
            "executor runs in this machine's own Python: install what the run's environment.txt lists there"
        )
    found = read(run_dir)
    if found is None or not found[1]:
        raise UsageError(f"{record.id} has no environment.txt (made before it was recorded, or turned off): "
                         "nothing to build its environment from")  # fmt: skip
    header, packages = found
    lines = [f"# the environment of run {record.id} (python {header.get('python', '?').split(' ')[0]})"]
    lines += [f"{name}=={version}" for name, version in packages.items()]
    return ("\n".join(lines) + "\n").encode()
