"""Runs in progress on this machine: which process runs them, and cancel requests.

``.mm4/active/<run>.pid`` names the mm4watch process executing a run;
``.mm4/active/<run>.cancel`` asks it to stop. ``cancel`` signals that process,
which stops its kernel or container, brings results home and records
``cancelled``.
"""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .fsutil import atomic_write_text

ACTIVE = "active"


def folder(state_dir: Path) -> Path:
    path = state_dir / ACTIVE
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def registered(state_dir: Path, run_id: str) -> Iterator[None]:
    pid_file = folder(state_dir) / f"{run_id}.pid"
    atomic_write_text(pid_file, f"{os.getpid()}\n")
    try:
        yield
    finally:
        pid_file.unlink(missing_ok=True)


def cancel_requested(state_dir: Path, run_id: str) -> bool:
    marker = folder(state_dir) / f"{run_id}.cancel"
    if marker.exists():
        marker.unlink(missing_ok=True)
        return True
    return False


def request_cancel(state_dir: Path, run_id: str) -> int | None:
    """Ask the process running ``run_id`` to stop; its pid, or None if none runs it."""
    pid_file = folder(state_dir) / f"{run_id}.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    atomic_write_text(folder(state_dir) / f"{run_id}.cancel", "cancel\n")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        (folder(state_dir) / f"{run_id}.cancel").unlink(missing_ok=True)
        return None
    return pid
