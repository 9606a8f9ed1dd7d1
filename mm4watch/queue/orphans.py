"""Runs whose mm4watch process died (a closed terminal, kill -9, a power cut) are finished anyway.

Every process that runs or finishes a run holds that run's lock
(``active.owning``); the lock dies with the process. A run recorded ``running``
whose lock is free has nobody left: ``adopt`` hands each such run to a process
of its own (``mm4watch _resume RUN``), which takes the lock, re-attaches through
the executor's ``find`` (the runner on this machine, the container or the
process on the Mini still holds its results) and brings them home, or records
the run ``interrupted`` when nothing is left. The daemon adopts on its rounds,
and so does every command that shows runs (``status``, ``history``, ``show``,
``report``).
"""

from __future__ import annotations

import sys
import time

from ..core import proc
from ..core.config import Config, Place
from ..results.records import parse_iso
from . import active

GRACE_S = 10.0  # a run this young may be in the moment between its record and its lock
LOG_NAME = "resume.log"


def adopt(config: Config | Place) -> list[str]:
    """Start finishing every orphaned run; their ids."""
    from ..results.store import History

    if isinstance(config, Place) and config.error is not None:
        return []  # a broken mm4.toml: `_resume` could not load it either; status says what is wrong
    found = []
    now = time.time()
    for record in History(config.results_dir, config.state_dir).query(status="running"):
        queued = parse_iso(record.queued_at)
        if queued is None or now - queued.timestamp() < GRACE_S:
            continue
        if not active.orphaned(config.state_dir, record.id):
            continue
        config.state_dir.mkdir(parents=True, exist_ok=True)
        with open(config.state_dir / LOG_NAME, "ab") as out:
            proc.detach(proc.command("_resume", record.id), cwd=config.root, stdout=out)
        found.append(record.id)
    return found


def quietly(config: Config | Place) -> None:
    """``adopt`` for a command that only shows runs: never in its way."""
    try:
        adopt(config)
    except Exception as exc:  # showing runs matters more; the daemon adopts too
        print(f"mm4watch: could not look for runs left by a dead process: {exc}", file=sys.stderr)
