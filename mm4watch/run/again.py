"""A past run's exact input, again: the notebook rebuilt from the run's commit plus its saved
``source.patch`` and checked against the recorded sha256, with the same parameters and executor
(and the run's image, for container executors, while the engine has it). ``mm4watch rerun`` and
the Lab panel's Rerun both ask for it here, so both refuse the same way."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..core.config import Config
from ..core.errors import Mm4Error, UsageError
from ..core.git import rebuild
from ..results.records import PATCH_NAME, RunRecord
from .pipeline import RunRequest


def request(cfg: Config, record: RunRecord, run_dir: Path, *, same_environment: bool = False) -> RunRequest:
    """What to run to repeat ``record``; ``Mm4Error`` says why it cannot be repeated exactly."""
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
    return RunRequest(
        notebook=cfg.root / record.notebook,
        parameters=dict(record.parameters),
        executor=record.executor.get("name"),
        content=content,
        commit_sha=sha,
        patch=patch,
        image=record.executor.get("image"),
        rerun_of=record.id,
        requirements=_pinned(record, run_dir) if same_environment else None,
    )


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
