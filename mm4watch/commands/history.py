"""mm4watch history: past runs, newest first, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from ..core import config
from ..core.errors import UsageError
from ..core.terminal import visible
from ..queue import orphans
from ..results.records import STATUSES, RunRecord
from ..results.store import History
from ..views import format

MAX_EXTRA = 8  # parameter and metric columns shown unless --columns says which


@dataclass(frozen=True)
class Column:
    header: str
    field: str  # "parameters" or "metrics"
    key: str

    def value(self, record: RunRecord) -> str:
        values = getattr(record, self.field)
        return format.value(values[self.key]) if self.key in values else ""


def extra_columns(runs: list[RunRecord], chosen: list[str] | None) -> tuple[list[Column], int]:
    """Parameter and metric columns for these runs, those whose values differ first;
    with ``chosen``, those names in that order. Also how many were left out."""
    found: dict[tuple[str, str], list[Any]] = {}
    for record in runs:
        for field in ("parameters", "metrics"):
            for key, value in getattr(record, field).items():
                found.setdefault((field, key), []).append(json.dumps(value, sort_keys=True))
    params = {k for f, k in found if f == "parameters"}

    def column(field: str, key: str) -> Column:
        clash = field == "metrics" and key in params
        return Column(f"metric:{key}" if clash else key, field, key)

    if chosen is not None:
        columns = []
        for name in chosen:
            field, _, key = name.rpartition(":")
            fields = (
                [{"param": "parameters", "metric": "metrics"}.get(field, field)] if field else ["parameters", "metrics"]
            )
            hits = [column(f, key) for f in fields if (f, key) in found]
            if not hits:
                known = ", ".join(sorted({k for _, k in found})) or "none in these runs"
                raise UsageError(f"--columns: no parameter or metric {name!r} in the listed runs (known: {known})")
            columns.extend(hits)
        return columns, 0
    n = len(runs)

    def differs(item: tuple[str, str]) -> bool:
        values = found[item]
        return len(values) < n or len(set(values)) > 1

    ordered = sorted(found, key=lambda item: (not differs(item), item[0] != "parameters", item[1]))
    return [column(f, k) for f, k in ordered[:MAX_EXTRA]], max(0, len(ordered) - MAX_EXTRA)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notebook", metavar="NAME", help="only this notebook (name or path)")
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
    runs = history.query(notebook=notebook, status=args.status, limit=args.limit or None, sort=args.sort)
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
    chosen = None if args.columns is None else [c.strip() for c in args.columns.split(",") if c.strip()]
    columns, left_out = extra_columns(runs, chosen)
    headers = format.HEADERS + [c.header for c in columns]
    rows = [[visible(cell) for cell in format.run_row(record) + [c.value(record) for c in columns]] for record in runs]
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
