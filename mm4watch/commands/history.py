"""mm4watch history: past runs, newest first, as a table or JSON."""
from __future__ import annotations

import argparse
import json
from typing import Any

from .. import config
from ..durations import format_duration
from ..errors import UsageError
from ..records import STATUSES, RunRecord, parse_iso
from ..store import History

STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timeout": "red",
    "interrupted": "yellow",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "blue",
}


def short_commit(commit: dict[str, Any] | None) -> str:
    if not commit:
        return "-"
    sha = (commit.get("sha") or "")[:8] or "(none)"
    return sha + ("*" if commit.get("dirty") else "")


def row(record: RunRecord) -> list[str]:
    started = parse_iso(record.started_at or record.queued_at)
    return [
        record.id,
        record.notebook,
        record.status,
        record.trigger,
        short_commit(record.commit),
        started.strftime("%Y-%m-%d %H:%M:%S") if started else "",
        format_duration(record.duration_s),
        str(record.executor.get("name", "")),
    ]


HEADERS = ["run", "notebook", "status", "trigger", "commit", "started", "duration", "executor"]


def main(args: argparse.Namespace) -> int:
    for status in args.status or []:
        if status not in STATUSES:
            raise UsageError(f"--status {status!r}: use one of {', '.join(STATUSES)}")
    if args.limit < 0:
        raise UsageError("--limit must be 0 (all) or more")
    cfg = config.load()
    runs = History(cfg.results_dir, cfg.state_dir).query(
        notebook=args.notebook, status=args.status, limit=args.limit or None
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2))
        return 0
    if not runs:
        print(f"no runs in {cfg.results_dir}")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for header in HEADERS:
        table.add_column(header, no_wrap=header in ("run", "commit", "started"))
    for record in runs:
        cells = row(record)
        cells[2] = f"[{STATUS_STYLE.get(record.status, 'white')}]{cells[2]}[/]"
        table.add_row(*cells)
    import sys

    # piped output keeps whole lines instead of squeezing columns to 80 characters
    Console(width=None if sys.stdout.isatty() else 1000).print(table)
    return 0
