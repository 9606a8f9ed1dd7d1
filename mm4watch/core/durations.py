"""Durations as people write them: "90", "45s", "30m", "2h", "1h30m", "1.5h"."""

from __future__ import annotations

import re

MAX_S = 365 * 86400.0  # a timeout that is a timeout: finite, and JSON can write it
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?", re.IGNORECASE)


def parse_duration(value: object) -> float:
    """Return seconds (> 0). Raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f'{value!r} is not a duration; write e.g. "30m", "2h" or 90 (seconds)')
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        pos, seconds = 0, 0.0
        if not text:
            raise ValueError('empty duration; write e.g. "30m", "2h" or 90 (seconds)')
        while pos < len(text):
            m = _PART.match(text, pos)
            if not m or m.end() == pos:
                raise ValueError(f'{value!r} is not a duration; write e.g. "45s", "30m", "2h", "1h30m"')
            seconds += float(m.group(1)) * _UNITS[(m.group(2) or "s").lower()]
            pos = m.end()
    else:
        raise ValueError(f'{value!r} is not a duration; write e.g. "30m", "2h" or 90 (seconds)')
    if seconds <= 0:
        raise ValueError(f"{value!r}: a duration must be more than zero")
    if not seconds <= MAX_S:  # also NaN and inf: 400 nines is a float's infinity
        raise ValueError(f"{str(value)[:40]!r}: a duration is at most 365 days")
    return seconds


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def clock_time(at: float) -> str:
    """A moment as a clock shows it here: ``07:26:03``."""
    import time

    return time.strftime("%H:%M:%S", time.localtime(at))
