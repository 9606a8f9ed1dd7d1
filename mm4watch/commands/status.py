"""mm4watch status: the daemon, what runs and for how long, what waits and why."""
from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone

from .. import config
from ..pidlock import read_info
from ..durations import format_duration
from ..queue import Queue
from ..records import parse_iso, read_record


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    info = read_info(cfg.state_dir)
    if info:
        up = time.time() - float(info.get("started_at", time.time()))
        print(f"daemon: running (pid {info.get('pid')}, up {format_duration(up)}) for {cfg.root}")
    else:
        print(f"daemon: not running for {cfg.root} (`mm4watch start`)")
    entries = Queue(cfg.state_dir).entries()
    running = [e for e in entries if e.state == "claimed"]
    waiting = [e for e in entries if e.state == "queued"]
    for entry in running:
        line = f"running: {entry.notebook} (entry {entry.id}, {entry.trigger}, {entry.executor})"
        if entry.run_id:
            try:
                record = read_record(cfg.results_dir / entry.run_id)
                started = parse_iso(record.started_at)
                if started:
                    line += f" {entry.run_id}, for {format_duration((datetime.now(timezone.utc) - started).total_seconds())}"
            except (OSError, ValueError):
                pass
        print(line)
    for entry in waiting:
        line = f"queued:  {entry.notebook} (entry {entry.id}, {entry.trigger}, {entry.executor})"
        if entry.not_before > time.time():
            line += f", next try in {format_duration(entry.not_before - time.time())}"
        if entry.last_error:
            line += f"\n         waiting because: {entry.last_error}"
        print(line)
    if not running and not waiting:
        print("queue: empty")
    return 0
