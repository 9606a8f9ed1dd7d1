"""Processes on this machine: the daemon's lock, runs in progress, cancel requests.

Every check of a pid also checks the process's start time (pids are reused: a
pid file left by a ``kill -9`` may name an unrelated process by now).

``.mm4/daemon.lock`` is held (flock) by the running daemon; ``.mm4/daemon.json``
says its pid and start. Probing the lock is cheap: the git hook asks too.

``.mm4/active/<run key>.pid`` (``names.run_key``) names the mm4watch process executing a run;
``.mm4/active/<run>.cancel`` asks it to stop. ``cancel`` signals that process,
which stops its kernel or container, brings results home and records
``cancelled``.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from ..core.fsutil import atomic_write_text
from ..core.names import run_key

ACTIVE = "active"
LOCK_NAME = "daemon.lock"
INFO_NAME = "daemon.json"


def read_info(state_dir: Path) -> dict[str, Any] | None:
    """The running daemon's pid file, or None when no daemon holds the lock."""
    lock = state_dir / LOCK_NAME
    if not lock.exists():
        return None
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                info: dict[str, Any] = json.loads((state_dir / INFO_NAME).read_text())
                return info
            except (OSError, ValueError):
                return {"pid": None}
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None  # a stale pid file from a daemon that died: the lock is free


def take_daemon_lock(state_dir: Path) -> TextIO | None:
    """The daemon's lock, held for as long as the returned file stays open; None when another holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fh = open(state_dir / LOCK_NAME, "a+")  # noqa: SIM115 (held open: that is the lock)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


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


def nudge(state_dir: Path) -> None:
    """Tell the running daemon its queue has a new entry (SIGUSR2): it starts it now, not at its
    next look (up to a second later when idle). No daemon, or another process with its old pid: nothing."""
    import signal

    info = read_info(state_dir)
    # "watching": its signal handlers are in place (SIGUSR2 would end a daemon still starting)
    if not info or not info.get("watching") or not alive(int(info.get("pid") or 0), info.get("pid_started")):
        return
    try:
        os.kill(int(info["pid"]), signal.SIGUSR2)
    except OSError:
        pass


@contextmanager
def registered(state_dir: Path, run_id: str) -> Iterator[None]:
    pid_file = folder(state_dir) / f"{run_key(run_id)}.pid"
    atomic_write_text(pid_file, f"{os.getpid()} {process_started(os.getpid())!r}\n")
    try:
        yield
    finally:
        pid_file.unlink(missing_ok=True)


@contextmanager
def owning(state_dir: Path, run_id: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold ``run_id``'s lock while this process runs or finishes it (True), or, with ``wait=False``,
    False at once when another process holds it.

    The lock dies with its process, however it dies (kill -9, a closed terminal, a power cut): a
    run recorded ``running`` whose lock is free has nobody left to finish it (``orphaned``)."""
    import fcntl

    with open(folder(state_dir) / f"{run_key(run_id)}.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def orphaned(state_dir: Path, run_id: str) -> bool:
    """Whether no process holds ``run_id``'s lock (looked at, not kept)."""
    with owning(state_dir, run_id, wait=False) as free:
        return free


def phase_file(state_dir: Path, run_id: str) -> Path:
    """Where a run says what it is doing now, for ``mm4watch status``."""
    return folder(state_dir) / f"{run_key(run_id)}.phase"


def phase(state_dir: Path, run_id: str) -> str | None:
    try:
        return phase_file(state_dir, run_id).read_text().strip() or None
    except OSError:
        return None


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
