"""mm4watch history: past runs, newest first, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
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
    history = History(cfg.results_dir, cfg.state_dir)
    notebook = history.notebook_named(args.notebook) if args.notebook else None
    runs = history.query(notebook=notebook, status=args.status, limit=args.limit or None)
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2))
        return 0
    if not runs:
        if args.notebook or args.status:
            total = history.count()
            what = " ".join(
                filter(
                    None,
                    [
                        f"of {args.notebook}" if args.notebook else "",
                        f"with status {', '.join(args.status)}" if args.status else "",
                    ],
                )
            )
            print(f"no runs {what} ({total} runs in all in {cfg.results_dir})")
        else:
            print(f"no runs in {cfg.results_dir}")
        return 0
    rows = [row(record) for record in runs]
    if not sys.stdout.isatty():
        # piped: plain aligned columns, whole lines, no colour (and no rich import)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
        for cells in (HEADERS, *rows):
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for i, header in enumerate(HEADERS):
        if header == "notebook":  # the one column that gives way in a narrow terminal
            table.add_column(header, overflow="fold")
        else:
            width = max(len(header), *(len(r[i]) for r in rows))
            table.add_column(header, no_wrap=True, min_width=width)
    for record, cells in zip(runs, rows, strict=True):
        cells[2] = f"[{STATUS_STYLE.get(record.status, 'white')}]{cells[2]}[/]"
        table.add_row(*cells)
    Console().print(table)
    return 0
