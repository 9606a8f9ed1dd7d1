"""What ``mm4watch status`` shows, first as data (``snapshot``), then as lines (``lines``).

The snapshot is what a terminal UI or an editor extension would read: the daemon, each run in
progress with its phase, what waits and why, what needs attention, refused saves and git's
writes lately. Every fact comes from state the daemon and the queue store as data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..core.config import Place
from ..queue import active, intake
from ..queue.entries import Queue
from ..queue.schema import Entry
from ..results.records import parse_iso, read_record
from . import format

RECENT_S = 600.0  # merged and replaced requests, refused saves and git's writes are shown this long


@dataclass(frozen=True)
class Daemon:
    pid: int | None
    up_s: float
    stopping: bool
    held: str | None  # why new runs wait (a broken mm4.toml), when they do


@dataclass(frozen=True)
class Running:
    entry: Entry
    for_s: float | None  # since its run started; None before it has a record
    phase: str | None  # what it is doing: "building on mini", "cell 3 of 12"


@dataclass(frozen=True)
class GitWrites:
    operation: str  # "checkout", "rebase", "while the daemon was stopped"
    notebooks: list[str]


@dataclass(frozen=True)
class Snapshot:
    root: str
    daemon: Daemon | None
    config_error: str | None
    running: list[Running] = field(default_factory=list)
    waiting: list[Entry] = field(default_factory=list)
    parked: list[Entry] = field(default_factory=list)
    refused: list[Entry] = field(default_factory=list)
    git_writes: list[GitWrites] = field(default_factory=list)
    lately: list[Entry] = field(default_factory=list)  # merged into or replaced by another entry
    sweeps: dict[str, dict[str, int]] = field(default_factory=dict)  # under way: its runs by state


def running_for(place: Place, entry: Entry) -> float | None:
    """Seconds since a claimed entry's run started; None before it has a record (or when it is gone)."""
    if not entry.run_id:
        return None
    try:
        begun = parse_iso(read_record(place.results_dir / entry.run_id).started_at)
    except (OSError, ValueError):
        return None
    return (datetime.now(UTC) - begun).total_seconds() if begun else None


def snapshot(place: Place) -> Snapshot:
    info: dict[str, Any] | None = active.read_info(place.state_dir)
    daemon = None
    if info:
        daemon = Daemon(
            pid=info.get("pid"),
            up_s=time.time() - float(info.get("started_at", time.time())),
            stopping=bool(info.get("stopping")),
            held=info.get("held") or None,
        )
    queue = Queue(place.state_dir)
    entries = queue.entries()
    running = [
        Running(e, running_for(place, e), active.phase(place.state_dir, e.run_id) if e.run_id else None)
        for e in entries
        if e.state == "claimed"
    ]
    by_operation: dict[str, list[str]] = {}
    for e in queue.recent(("git",), RECENT_S):
        by_operation.setdefault(str(e.detail.get("operation", "git operation")), []).append(e.notebook)
    return Snapshot(
        root=str(place.root),
        daemon=daemon,
        config_error=str(place.error) if place.error is not None else None,
        running=running,
        waiting=[e for e in entries if e.state == "queued"],
        parked=queue.entries(("parked",)),
        refused=queue.recent(("refused",), RECENT_S),
        git_writes=[GitWrites(op, sorted(set(names))) for op, names in by_operation.items()],
        lately=queue.recent(("merged", "superseded"), RECENT_S),
        sweeps=intake.sweeps(queue, under_way=True),
    )


def lines(snap: Snapshot) -> list[str]:
    out = []
    d = snap.daemon
    if d is not None:
        state = "stopping: it exits when the current run ends" if d.stopping else "running"
        out.append(f"daemon: {state} (pid {d.pid}, up {format.duration(d.up_s)}) for {snap.root}")
        if d.held:
            out.append(f"HOLDING: new runs wait until mm4.toml is fixed (then they start by themselves):\n  {d.held}")
    else:
        out.append(f"daemon: not running for {snap.root} (`mm4watch start`)")
    if snap.config_error is not None and not (d and d.held):
        out.append(f"mm4.toml: {snap.config_error}")
    for run in snap.running:
        e = run.entry
        line = f"running: {e.notebook} (entry {e.id}, {e.trigger}, {e.executor}{_in_sweep(e)})"
        if e.run_id and run.for_s is not None:
            line += f" {e.run_id}, for {format.duration(run.for_s)}"
        if run.phase:
            line += f": {run.phase}"
        out.append(line)
    now = time.time()
    for e in snap.waiting:
        line = f"queued:  {e.notebook} (entry {e.id}, {e.trigger}, {e.executor}{_in_sweep(e)})"
        if e.detail.get("away_since"):
            line += f", its machine away since {format.clock(e.detail['away_since'])}"
        if e.not_before > now:
            line += f", next try in {format.duration(e.not_before - now)}"
        if e.last_error:
            line += f"\n         waiting because: {e.last_error}"
        out.append(line)
    out.extend(f"parked:  {e.notebook} (entry {e.id}): {e.last_error}" for e in snap.parked)
    for sweep_id, states in snap.sweeps.items():
        of = sum(states.values())
        rest = ", ".join(f"{n} {s}" for s, n in states.items() if s not in ("done", "claimed", "queued"))
        out.append(
            f"sweep:   {sweep_id}: {states.get('done', 0)} of {of} ended, {states.get('claimed', 0)} running, "
            f"{states.get('queued', 0)} queued" + (f", {rest}" if rest else "")
        )
    if not snap.running and not snap.waiting:
        out.append("queue: empty")
    for e in snap.refused:
        why = e.detail.get("reason") or e.note
        out.append(f"refused: the {e.trigger} of {e.notebook} at {format.clock(e.queued_at)} queued nothing: {why}")
    for g in snap.git_writes:
        noun = "notebook" if len(g.notebooks) == 1 else "notebooks"
        shown = ", ".join(g.notebooks[:5]) + (", ..." if len(g.notebooks) > 5 else "")
        out.append(f"lately: {len(g.notebooks)} {noun} changed by git {g.operation}: not runs ({shown})")
    out.extend("lately:" + format.entry_line(e)[5:].replace("\n       ", "\n        ") for e in snap.lately)
    return out


def _in_sweep(e: Entry) -> str:
    s = e.sweep or {}
    return f", sweep {s.get('id')} {int(s.get('index', 0)) + 1}/{s.get('of')}" if s else ""
