"""mm4watch status: the daemon, what runs and for how long, what waits and why."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from ..core import config
from ..core.durations import format_duration
from ..queue import active, orphans
from ..queue.active import read_info
from ..queue.entries import Entry, Queue
from ..results.records import parse_iso, read_record
from .queue import RECENT_S
from .queue import line as entry_line


def running_for(cfg: config.Place, entry: Entry) -> float | None:
    """Seconds since a claimed entry's run started; None before it has a record (or when it is gone)."""
    if not entry.run_id:
        return None
    try:
        started = parse_iso(read_record(cfg.results_dir / entry.run_id).started_at)
    except (OSError, ValueError):
        return None
    return (datetime.now(UTC) - started).total_seconds() if started else None


def main(args: argparse.Namespace) -> int:
    cfg = config.locate()
    orphans.quietly(cfg)  # a run whose process died is finished, not shown running for ever
    info = read_info(cfg.state_dir)
    if info:
        up = time.time() - float(info.get("started_at", time.time()))
        state = "stopping: it exits when the current run ends" if info.get("stopping") else "running"
        print(f"daemon: {state} (pid {info.get('pid')}, up {format_duration(up)}) for {cfg.root}")
        if info.get("held"):
            print(f"HOLDING: new runs wait until mm4.toml is fixed (then they start by themselves):\n  {info['held']}")
    else:
        print(f"daemon: not running for {cfg.root} (`mm4watch start`)")
    if cfg.error is not None and not (info and info.get("held")):
        print(f"mm4.toml: {cfg.error}")
    queue = Queue(cfg.state_dir)
    entries = queue.entries()
    running = [e for e in entries if e.state == "claimed"]
    waiting = [e for e in entries if e.state == "queued"]
    for entry in running:
        line = f"running: {entry.notebook} (entry {entry.id}, {entry.trigger}, {entry.executor})"
        so_far = running_for(cfg, entry)
        if entry.run_id and so_far is not None:
            line += f" {entry.run_id}, for {format_duration(so_far)}"
        doing = active.phase(cfg.state_dir, entry.run_id) if entry.run_id else None
        if doing:
            line += f": {doing}"
        print(line)
    for entry in waiting:
        line = f"queued:  {entry.notebook} (entry {entry.id}, {entry.trigger}, {entry.executor})"
        if entry.not_before > time.time():
            line += f", next try in {format_duration(entry.not_before - time.time())}"
        if entry.last_error:
            line += f"\n         waiting because: {entry.last_error}"
        print(line)

    for entry in queue.entries(("parked",)):
        print(f"parked:  {entry.notebook} (entry {entry.id}): {entry.last_error}")
    if not running and not waiting:
        print("queue: empty")
    for entry in queue.recent(("refused",), RECENT_S):
        when = time.strftime("%H:%M:%S", time.localtime(entry.queued_at))
        print(f"refused: the {entry.trigger} of {entry.notebook} at {when} queued nothing: {entry.note}")
    by_git: dict[str, list[str]] = {}
    for entry in queue.recent(("git",), RECENT_S):
        by_git.setdefault((entry.note or "").split(" at ")[0].removeprefix("changed by "), []).append(entry.notebook)
    for what, notebooks in by_git.items():
        names = sorted(set(notebooks))
        noun = "notebook" if len(names) == 1 else "notebooks"
        print(
            f"lately: {len(names)} {noun} changed by {what}: not runs ({', '.join(names[:5])}"
            + (", ..." if len(names) > 5 else "")
            + ")"
        )
    for entry in queue.recent(("merged", "superseded"), RECENT_S):
        print("lately:" + entry_line(entry)[5:].replace("\n       ", "\n        "))
    return 0
