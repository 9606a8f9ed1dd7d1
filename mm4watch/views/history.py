"""``mm4watch history`` as data: the runs' rows, with the parameter and metric columns that tell
them apart (or those asked for)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..core.errors import UsageError
from ..core.terminal import visible
from ..results.records import RunRecord
from . import format

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


def runs_table(runs: list[RunRecord], chosen: list[str] | None) -> tuple[list[str], list[list[str]], int]:
    """Headers, one row of cells per run (safe to show), and how many parameter/metric columns were
    left out."""
    columns, left_out = extra_columns(runs, chosen)
    headers = format.HEADERS + [c.header for c in columns]
    rows = [[visible(cell) for cell in format.run_row(record) + [c.value(record) for c in columns]] for record in runs]
    return headers, rows, left_out
