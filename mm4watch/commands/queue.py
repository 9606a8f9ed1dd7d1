"""mm4watch queue [list | remove ENTRY | retry ENTRY | clear]: the runs waiting to start.

Works without a valid mm4.toml (it needs only ``.mm4/``).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from ..core import config
from ..core.errors import UsageError
from ..queue.entries import Queue
from ..queue.schema import Entry
from ..views.format import entry_line
from ..views.status import RECENT_S

ALL_S = 86400.0


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=["list", "remove", "retry", "clear"], default="list")
    parser.add_argument("entry", nargs="?", type=int, metavar="ENTRY", help="entry number, for remove and retry")
    parser.add_argument(
        "--all",
        action="store_true",
        help="also requests merged into another run, replaced saves and rejected entries (last 24 h)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def main(args: argparse.Namespace) -> int:
    cfg = config.locate()
    queue = Queue(cfg.state_dir)
    if args.action in ("remove", "retry"):
        if args.entry is None:
            raise UsageError(f"mm4watch queue {args.action} ENTRY (the number `mm4watch queue` shows)")
        if args.action == "remove":
            if not queue.remove(args.entry):
                raise UsageError(f"entry {args.entry} is not waiting or parked (running, done or unknown)")
            print(f"removed entry {args.entry}")
        else:
            if not queue.retry(args.entry):
                raise UsageError(f"entry {args.entry} is not parked or rejected; nothing to retry")
            print(f"entry {args.entry} is queued again")
        return 0
    if args.action == "clear":
        print(f"removed {queue.clear()} waiting entries")
        return 0
    entries = listed(queue, args.all)
    if args.json:
        print(json.dumps([as_json(e) for e in entries], indent=2))
        return 0
    if not entries:
        print("queue: empty")
    for e in entries:
        print(entry_line(e))
    return 0


def listed(queue: Queue, everything: bool = False) -> list[Entry]:
    """What waits, runs or needs attention (parked), then what was merged or replaced lately."""
    current = queue.entries(("queued", "claimed", "parked"))
    states = ("merged", "superseded", "rejected") if everything else ("merged", "superseded")
    recent = queue.recent(states, ALL_S if everything else RECENT_S)
    return sorted(current + recent, key=lambda e: e.id)


def _iso(at: float | None) -> str | None:
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="milliseconds") if at else None


def as_json(e: Entry) -> dict[str, object]:
    return {
        "id": e.id,
        "notebook": e.notebook,
        "trigger": e.trigger,
        "state": e.state,
        "executor": e.executor,
        "commit": e.commit_sha,
        "parameters": e.parameters,
        "queued_at": _iso(e.queued_at),
        "run_id": e.run_id,
        "last_error": e.last_error,
        "merged_into": e.merged_into,
        "note": e.note,
        "triggers": [t.get("trigger") for t in e.triggers],
        "not_before": _iso(e.not_before) if e.not_before > e.queued_at else None,
    }
