"""mm4watch history: past runs, newest first, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from ..core import config
from ..core.errors import UsageError
from ..queue import orphans
from ..results.records import STATUSES
from ..results.store import History
from ..views import format
from ..views.history import runs_table


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notebook", metavar="NAME", help="only this notebook (name or path)")
    parser.add_argument("--sweep", metavar="ID", help="only the runs of this sweep (mm4watch sweep)")
    parser.add_argument(
        "--status",
        metavar="STATUS",
        action="append",
        help="only runs with this status (repeatable): queued, running, succeeded, failed, timeout, cancelled, interrupted",
    )
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="at most N runs (default 20; 0 for all)")
    parser.add_argument(
        "--sort",
        metavar="KEY",
        help="order by a metric (or parameter): --sort loss smallest first, --sort -acc largest first",
    )
    parser.add_argument(
        "--columns",
        metavar="A,B",
        help="parameter and metric columns to show, in order (param:NAME or metric:NAME when both exist); "
        "default: up to 8, those that differ between the listed runs first; '' for none",
    )
    parser.add_argument(
        "--json", action="store_true", help="print a JSON array of run records (with parameters and metrics)"
    )


def main(args: argparse.Namespace) -> int:
    for status in args.status or []:
        if status not in STATUSES:
            raise UsageError(f"--status {status!r}: use one of {', '.join(STATUSES)}")
    if args.limit < 0:
        raise UsageError("--limit must be 0 (all) or more")
    cfg = config.load()
    orphans.quietly(cfg)  # a run whose process died is finished, not shown running for ever
    history = History(cfg.results_dir, cfg.state_dir)
    notebook = history.notebook_named(args.notebook) if args.notebook else None
    runs = history.query(
        notebook=notebook, status=args.status, limit=args.limit or None, sort=args.sort, sweep=args.sweep
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2))
        return 0
    if not runs:
        if args.notebook or args.status or args.sweep:
            total = history.count()
            what = " ".join(
                filter(
                    None,
                    [
                        f"of {args.notebook}" if args.notebook else "",
                        f"with status {', '.join(args.status)}" if args.status else "",
                        f"of sweep {args.sweep}" if args.sweep else "",
                    ],
                )
            )
            print(f"no runs {what} ({total} runs in all in {cfg.results_dir})")
        else:
            print(f"no runs in {cfg.results_dir}")
        return 0
    chosen = None if args.columns is None else [c.strip() for c in args.columns.split(",") if c.strip()]
    headers, rows, left_out = runs_table(runs, chosen)
    if left_out:
        print(f"({left_out} more parameter/metric columns: choose with --columns)", file=sys.stderr)
    if not sys.stdout.isatty():
        # piped: plain aligned columns, whole lines, no colour (and no rich import)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        for cells in (headers, *rows):
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    for i, header in enumerate(headers):
        if header == "notebook":  # the one column that gives way in a narrow terminal
            table.add_column(header, overflow="fold")
        else:
            width = max(len(header), *(len(r[i]) for r in rows))
            table.add_column(header, no_wrap=True, min_width=width)
    for record, cells in zip(runs, rows, strict=True):
        texts = [Text(cell) for cell in cells]  # text, never markup: a parameter may hold [/]
        texts[2].stylize(format.STATUS_STYLE.get(record.status, "white"))
        table.add_row(*texts)
    Console(file=getattr(sys.stdout, "raw", sys.stdout)).print(table)  # its own colours, past cli's filter
    return 0
