"""Metrics: numbers a run reports, kept in its ``run.json`` so runs can be compared.

A notebook writes them with ``log_metrics(acc=0.91)`` (into ``metrics.json`` in
its output folder) or writes JSON files of its own, named by ``[results] metrics``
in mm4.toml. At the end of a run the numbers are read, nested objects flattened
with dots (``{"eval": {"acc": 1}}`` is ``eval.acc``), and copied into the record.
A file that is not JSON, or a value that is not a number, is reported and
skipped: metrics never fail a run.
"""

from __future__ import annotations

import fcntl
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..core.fsutil import atomic_write_json

METRICS_NAME = "metrics.json"
STEPS_NAME = "metrics.jsonl"  # log_metrics(step=N, ...): one JSON line per point, {"step": N, "loss": 0.3}
STEPS_MAX = 100_000  # points read per run (a curve longer than that is cut, said in run.log)
DEFAULT_PATTERNS: tuple[str, ...] = (METRICS_NAME,)


def flatten(data: Any, prefix: str = "") -> tuple[dict[str, float], list[str]]:
    """Numbers in ``data`` by dotted key, and the keys whose values were not numbers."""
    numbers: dict[str, float] = {}
    skipped: list[str] = []
    if not isinstance(data, dict):
        return numbers, [prefix or "(top level: not an object)"]
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            inner, bad = flatten(value, name)
            numbers.update(inner)
            skipped.extend(bad)
        elif not _finite(value):
            skipped.append(name)
        else:
            numbers[name] = value
    return numbers, skipped


def _finite(value: Any) -> bool:
    """A number a float holds (not a bool; an integer too large for a float is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def collect(run_dir: Path, patterns: Iterable[str] = DEFAULT_PATTERNS) -> tuple[dict[str, float], list[str]]:
    """The metrics of a finished run, and one line per problem found (for run.log).

    Files are read in pattern order, each pattern's matches sorted; a key found
    in two files keeps the later file's value (the problem list says so)."""
    metrics: dict[str, float] = {}
    problems: list[str] = []
    source: dict[str, str] = {}
    for pattern in patterns:
        for path in sorted(run_dir.glob(pattern)):
            if not path.is_file() or path.is_symlink():
                continue
            rel = path.relative_to(run_dir).as_posix()
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
                problems.append(f"metrics: {rel} is not JSON ({exc}); its numbers are not in run.json")
                continue
            numbers, skipped = flatten(data)
            if skipped:
                shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
                problems.append(f"metrics: {rel}: not numbers, left out: {shown}")
            for key, value in numbers.items():
                if key in source and source[key] != rel:
                    problems.append(f"metrics: {key} is in {source[key]} and {rel}; kept {rel}'s")
                source[key] = rel
                metrics[key] = value
    return metrics, problems


def log_metrics(folder: Path, values: dict[str, Any], step: int | None = None) -> dict[str, Any]:
    """Merge ``values`` into ``folder/metrics.json`` (atomically, under a lock); the file's new content.
    With ``step``, they are also a point of each one's curve: a line of ``folder/metrics.jsonl``."""
    for key, value in values.items():
        if not _finite(value):
            raise TypeError(f"log_metrics: {key}={value!r:.80} is not a finite number")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise TypeError(f"log_metrics: step={step!r:.80} is not a whole number")
    if step is not None and "step" in values:
        raise TypeError("log_metrics: 'step' is the point's step, not a metric's name")
    path = folder / METRICS_NAME
    with open(folder / f".{METRICS_NAME}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if step is not None and values:
            with open(folder / STEPS_NAME, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": step, **values}) + "\n")
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            current = {}
        except ValueError as exc:
            raise ValueError(f"log_metrics: {path} is not JSON ({exc}); fix or remove it") from None
        if not isinstance(current, dict):
            raise ValueError(f"log_metrics: {path} does not hold a JSON object; fix or remove it")
        current.update(values)
        atomic_write_json(path, current)
    return current


def read_steps(run_dir: Path, problems: list[str] | None = None) -> dict[str, list[list[float]]]:
    """The curves of a run (``metrics.jsonl``): each metric's ``[step, value]`` points in the order
    logged. A line that is not a point (not JSON, no whole ``step``, a value not a number) is
    skipped, and said in ``problems``."""
    curves: dict[str, list[list[float]]] = {}
    bad = 0
    try:
        fh = open(run_dir / STEPS_NAME, encoding="utf-8", errors="replace")
    except OSError:
        return curves
    with fh:
        for count, line in enumerate(fh):
            if count >= STEPS_MAX:
                if problems is not None:
                    problems.append(f"metrics: {STEPS_NAME} has more than {STEPS_MAX} points; the rest is not read")
                break
            try:
                point = json.loads(line)
                step = point.pop("step")
            except (ValueError, AttributeError, KeyError, TypeError, RecursionError):
                bad += 1
                continue
            if isinstance(step, bool) or not isinstance(step, int):
                bad += 1
                continue
            for key, value in point.items():
                if _finite(value):
                    curves.setdefault(str(key), []).append([step, value])
                else:
                    bad += 1
    if bad and problems is not None:
        problems.append(f"metrics: {bad} value(s) in {STEPS_NAME} are not points (a step and a number): left out")
    return curves
