"""Crash logs for unexpected errors: the traceback and versions, never shown raw."""

from __future__ import annotations

import platform
import sys
import tempfile
import traceback
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from .. import __version__
from . import config


def write_crash_log(argv: Sequence[str]) -> Path:
    try:
        root, _ = config.find_root()
        folder = root / config.STATE_DIR
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = Path(tempfile.gettempdir())
    path = folder / "crash.log"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"--- {datetime.now().isoformat()} mm4watch {__version__}\n")
        fh.write(f"python {sys.version.split()[0]} on {platform.platform()}\n")
        fh.write(f"argv: {list(argv)}\n")
        fh.write(traceback.format_exc())
    return path
