"""Runs in progress on this machine: which process runs them, and cancel requests.

``.mm4/active/<run key>.pid`` (``names.run_key``) names the mm4watch process executing a run;
``.mm4/active/<run>.cancel`` asks it to stop. ``cancel`` signals that process,
which stops its kernel or container, brings results home and records
``cancelled``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .fsutil import atomic_write_text
from .names import run_key

ACTIVE = "active"


def folder(state_dir: Path) -> Path:
    path = state_dir / ACTIVE
    path.mkdir(parents=True, exist_ok=True)
    return path


def process_started(pid: int) -> float | None:
    """When process ``pid`` started (its identity with the pid: pids are reused), or None if gone."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def alive(pid: int | None, started: float | None) -> bool:
    """Whether the process that had ``pid`` and started at ``started`` still runs."""
    return pid is not None and started is not None and process_started(pid) == started


@contextmanager
def registered(state_dir: Path, run_id: str) -> Iterator[None]:
    pid_file = folder(state_dir) / f"{run_key(run_id)}.pid"
    atomic_write_text(pid_file, f"{os.getpid()} {process_started(os.getpid())!r}\n")
    try:
        yield
    finally:
        pid_file.unlink(missing_ok=True)


def cancel_requested(state_dir: Path, run_id: str) -> bool:
    marker = folder(state_dir) / f"{run_key(run_id)}.cancel"
    if marker.exists():
        marker.unlink(missing_ok=True)
        return True
    return False


def request_cancel(state_dir: Path, run_id: str) -> int | None:
    """Ask the process running ``run_id`` to stop; its pid, or None if none runs it."""
    pid_file = folder(state_dir) / f"{run_key(run_id)}.pid"
    try:
        pid_text, _, started_text = pid_file.read_text().strip().partition(" ")
        pid, started = int(pid_text), float(started_text)
    except (OSError, ValueError):
        return None
    if not alive(pid, started):  # left by a process killed -9: the pid may be someone else's now
        pid_file.unlink(missing_ok=True)
        return None
    atomic_write_text(folder(state_dir) / f"{run_key(run_id)}.cancel", "cancel\n")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        (folder(state_dir) / f"{run_key(run_id)}.cancel").unlink(missing_ok=True)
        return None
    return pid
