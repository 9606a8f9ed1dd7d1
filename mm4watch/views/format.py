"""Values, commits, durations and rows as people read them: one way for every command and the page.

Pure: text in, text out. What reaches a terminal is filtered once more by ``terminal.visible``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.durations import format_duration as duration  # noqa: F401 (the views' name for it)
from ..queue.entries import clock  # noqa: F401 (the time of day the queue's notes use)
from ..results.records import parse_iso

if TYPE_CHECKING:
    from ..queue.schema import Entry
    from ..results.records import RunRecord

VALUE_WIDTH = 24  # a parameter or metric in a table column
SHA_WIDTH = 8
STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timeout": "red",
    "interrupted": "yellow",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "blue",
}
HEADERS = ["run", "notebook", "status", "trigger", "commit", "started", "duration", "executor"]


def value(given: Any, width: int | None = VALUE_WIDTH) -> str:
    """A parameter or metric: floats to 6 significant digits, the rest as JSON; cut to ``width``."""
    if isinstance(given, float):
        return f"{given:.6g}"
    text = given if isinstance(given, str) else json.dumps(given)
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def sha(text: str | None) -> str:
    return (text or "")[:SHA_WIDTH]


def commit(recorded: dict[str, Any] | None) -> str:
    """A run's commit: its short SHA, ``*`` when the tree was dirty; ``-`` with none recorded."""
    if not recorded:
        return "-"
    return (sha(recorded.get("sha")) or "(none)") + ("*" if recorded.get("dirty") else "")


def started(record: RunRecord) -> str:
    when = parse_iso(record.started_at or record.queued_at)
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else ""


def run_row(record: RunRecord) -> list[str]:
    """One run as the cells of ``HEADERS``."""
    return [
        record.id,
        record.notebook,
        record.status + (" (retried)" if record.retried_by else ""),
        record.trigger + (" (retry)" if record.retry_of else ""),
        commit(record.commit),
        started(record),
        duration(record.duration_s),
        str(record.executor.get("name", "")),
    ]


def entry_line(e: Entry) -> str:
    """One queue entry, as ``mm4watch queue`` lists it."""
    when = datetime.fromtimestamp(e.queued_at).strftime("%Y-%m-%d %H:%M:%S")
    state = "running" if e.state == "claimed" else e.state
    params = " " + " ".join(f"{k}={v!r}" for k, v in e.parameters.items()) if e.parameters else ""
    text = f"{e.id:>5}  {state:<10} {e.notebook}{params}  {e.trigger}  {e.executor or ''}  {when}"
    if len(e.triggers) > 1:
        text += f"  (asked by {', '.join(str(t.get('trigger')) for t in e.triggers)})"
    if e.note:
        text += f"\n       {e.note}"
    if e.last_error:
        text += f"\n       {'parked' if e.state == 'parked' else 'why'}: {e.last_error}"
    return text


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 32, lo: float | None = None, hi: float | None = None) -> str:
    """``values`` as a line of block characters, at most ``width`` long (averaged into buckets),
    scaled between ``lo`` and ``hi`` (default: their own least and greatest)."""
    if not values:
        return ""
    if len(values) > width:
        edges = [round(i * len(values) / width) for i in range(width + 1)]
        values = [sum(values[a:b]) / (b - a) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    span = (hi - lo) or 1.0
    top = len(SPARKS) - 1
    return "".join(SPARKS[max(0, min(top, round((v - lo) / span * top)))] for v in values)
