"""A run's log (run.log) as the executors use it: a line of mm4watch's own written into it, the
cell it last said it started, its tail; and an error cut to a line for a record's words."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from . import Job


def log_line(job: Job, line: str) -> None:
    """One line of mm4watch's own in the run's run.log, with its time."""
    from ..results.records import append_log

    append_log(job.log_path, line)


def brief(exc: BaseException, limit: int = 160) -> str:
    """An error's first line, cut to ``limit`` characters: for a record's words (run.log holds it whole)."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


NO_SPACE = f"[Errno {errno.ENOSPC}] No space left on device"


def log_tail(log_path: Path) -> str:
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 65536))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def last_cell(log_path: Path) -> int | None:
    """The cell the run's log last said it started (papermill's "Executing Cell N")."""
    found = re.findall(r"Executing Cell (\d+)", log_tail(log_path))
    return int(found[-1]) if found else None
