"""What the Lab extension's handlers answer, as JSON-ready data (pure: records and the status
snapshot in, dicts out). Nothing here parses a command's text."""

from __future__ import annotations

from typing import Any

from ..queue.schema import Entry
from ..results.records import RunRecord
from ..views.status import Snapshot

LOG_CHUNK = 64 * 1024  # a log tail's most bytes per answer


def entry(e: Entry) -> dict[str, Any]:
    """A queue entry as the page sees it: never the notebook's bytes."""
    return {
        "id": e.id, "notebook": e.notebook, "trigger": e.trigger, "executor": e.executor, "state": e.state,
        "run": e.run_id, "queued_at": e.queued_at, "parameters": e.parameters, "sweep": e.sweep,
        "error": e.last_error, "detail": e.detail,
    }  # fmt: skip


def status(snap: Snapshot) -> dict[str, Any]:
    d = snap.daemon
    return {
        "project": snap.root,
        "daemon": None if d is None else {"pid": d.pid, "up_s": d.up_s, "stopping": d.stopping, "held": d.held},
        "config_error": snap.config_error,
        "running": [{**entry(r.entry), "for_s": r.for_s, "phase": r.phase} for r in snap.running],
        "waiting": [entry(e) for e in snap.waiting],
        "parked": [entry(e) for e in snap.parked],
        "refused": [{**entry(e), "reason": e.detail.get("reason") or e.note} for e in snap.refused],
        "sweeps": snap.sweeps,
    }


def run(record: RunRecord) -> dict[str, Any]:
    """A run as a row of the panel: what the record says, the parts a table sorts by."""
    commit = record.commit or {}
    return {
        "id": record.id, "notebook": record.notebook, "status": record.status, "trigger": record.trigger,
        "commit": commit.get("sha"), "dirty": bool(commit.get("dirty")), "branch": commit.get("branch"),
        "queued_at": record.queued_at, "started_at": record.started_at, "finished_at": record.finished_at,
        "duration_s": record.duration_s, "executor": record.executor.get("name"), "parameters": record.parameters,
        "metrics": record.metrics, "error": record.error, "sweep": record.sweep, "curves": record.curves,
    }  # fmt: skip
