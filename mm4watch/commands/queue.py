"""mm4watch queue [list | remove ENTRY | clear]: the runs waiting to start."""
from __future__ import annotations

import argparse
import json
from datetime import datetime

from .. import config
from ..errors import UsageError
from ..queue import Queue


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    queue = Queue(cfg.state_dir)
    if args.action == "remove":
        if args.entry is None:
            raise UsageError("mm4watch queue remove ENTRY (the number `mm4watch queue` shows)")
        if not queue.remove(args.entry):
            raise UsageError(f"entry {args.entry} is not waiting (running, done or unknown)")
        print(f"removed entry {args.entry}")
        return 0
    if args.action == "clear":
        print(f"removed {queue.clear()} waiting entries")
        return 0
    entries = queue.entries(("queued", "claimed", "rejected") if args.all else ("queued", "claimed"))
    if args.json:
        print(json.dumps([
            {"id": e.id, "notebook": e.notebook, "trigger": e.trigger, "state": e.state, "executor": e.executor,
             "commit": e.commit_sha, "parameters": e.parameters, "queued_at": e.queued_at, "run_id": e.run_id,
             "last_error": e.last_error}
            for e in entries
        ], indent=2))
        return 0
    if not entries:
        print("queue: empty")
    for e in entries:
        when = datetime.fromtimestamp(e.queued_at).strftime("%Y-%m-%d %H:%M:%S")
        state = "running" if e.state == "claimed" else e.state
        print(f"{e.id:>5}  {state:<8} {e.notebook}  {e.trigger}  {e.executor or ''}  {when}"
              + (f"  ({e.last_error})" if e.last_error else ""))
    return 0
