"""What a notebook wrote into its run folder: every regular file with its size and sha256 (the
record's ``outputs``), mm4watch's own files and a Mac's droppings left out."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

from ..core.fsutil import is_dropping, sha256_file
from .records import RESERVED_NAMES


def collect_outputs(
    run_dir: Path, deadline: float | None = None, warnings: list[str] | None = None
) -> list[dict[str, Any]]:
    """Every regular file the notebook wrote into its run folder: path, size, sha256.

    Only regular files are opened (lstat first: a FIFO would block ``open`` for good, a socket or a
    device cannot be read): those others are not listed; a file that cannot be read, and the files
    left when the ``deadline`` (``time.monotonic()``) passes, are listed without a hash. Each is
    said in ``warnings``."""
    said = warnings if warnings is not None else []
    found: list[dict[str, Any]] = []
    for folder, dirs, files in os.walk(run_dir):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            rel = path.relative_to(run_dir).as_posix()
            if rel in RESERVED_NAMES or _is_lock(name) or is_dropping(name):
                continue
            try:
                info = path.lstat()
            except OSError as exc:
                said.append(f"output {rel}: {exc.strerror or exc}")
                continue
            if stat.S_ISLNK(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                said.append(f"output {rel}: not a regular file ({_kind(info.st_mode)}): not listed")
                continue
            entry: dict[str, Any] = {"path": rel, "size": info.st_size, "sha256": None}
            if deadline is not None and time.monotonic() > deadline:
                said.append(f"output {rel}: not hashed (finishing passed its deadline)")
            else:
                try:
                    entry["sha256"] = sha256_file(path)
                except OSError as exc:
                    said.append(f"output {rel}: cannot be read ({exc.strerror or exc})")
            found.append(entry)
    return found


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device")):
        if test(mode):
            return name
    return "a device" if stat.S_ISBLK(mode) else "not a file"


def _is_lock(name: str) -> bool:
    """mm4watch's own lock files in a run folder (the record's, log_metrics')."""
    return name.startswith(".run.json.") or (name.startswith(".") and name.endswith(".json.lock"))
