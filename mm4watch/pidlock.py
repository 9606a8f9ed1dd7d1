"""Is the daemon running? The lock it holds says so (cheap: the git hook asks too)."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

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
                return json.loads((state_dir / INFO_NAME).read_text())
            except (OSError, ValueError):
                return {"pid": None}
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None  # a stale pid file from a daemon that died: the lock is free
