"""What the Lab extension's handlers answer, as JSON-ready data (pure: records and the status
snapshot in, dicts out). Nothing here parses a command's text."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from ..core import config
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


def project(place: config.Place, server_root: Path) -> dict[str, Any]:
    """Where the project sits for the page (its folder as Lab names it, "" when the server runs in
    it) and the executors a run can be sent to."""
    try:
        prefix = place.root.resolve().relative_to(server_root).as_posix()
    except ValueError:
        prefix = None  # the server runs below the project: notebooks are still named from the project
    executors: list[str] = []
    default = None
    if place.error is None:
        try:
            cfg = config.load(place.root)
            executors, default = sorted(cfg.executors), cfg.executor().name
        except Exception:  # noqa: BLE001 - an executor chosen by MM4_EXECUTOR that is not there: none named
            pass
    try:
        results: str | None = place.results_dir.resolve().relative_to(server_root).as_posix()
    except ValueError:
        results = None  # outside what the server serves: the report opens from a terminal
    return {"prefix": "" if prefix == "." else prefix, "results": results, "executors": executors,
            "default_executor": default}  # fmt: skip


def folder(place: config.Place, run_id: str, server_root: Path) -> str | None:
    """A run's folder as Lab names it (to open its executed notebook), None when Lab cannot reach it."""
    try:
        return (place.results_dir / run_id).resolve().relative_to(server_root).as_posix()
    except ValueError:
        return None


def tag(path: Path, label: str) -> dict[str, Any]:
    """Whether the notebook opts in, and what its tag asks for (or why it cannot be read)."""
    from ..core.errors import NotebookError
    from ..core.tags import read_tag

    try:
        _, found = read_tag(path.read_bytes(), label)
    except FileNotFoundError:
        return {"tagged": None, "tag_error": f"{label} is not there (yet)"}
    except (NotebookError, OSError) as exc:
        return {"tagged": None, "tag_error": str(exc)}
    return {"tagged": found is not None, "tag_error": None, "tag": dict(found.options) if found else None}


def parameter_lines(lines: list[Any]) -> dict[str, Any]:
    """Parameters typed as a parameters cell holds them (``lr = 0.01``, one per line; ``#`` comments
    and blank lines skipped): a Python literal is read as Python reads it, anything else as ``-p``."""
    from ..core.errors import UsageError
    from ..triggers.params import key_value, resolve

    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise UsageError("lines: a list of `name = value` texts")
    found: dict[str, Any] = {}
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, raw = key_value(line.strip(), flag="parameter")
        try:
            found[key] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            found[key] = resolve(raw.strip())
    return found


def run(record: RunRecord, where: str | None = None) -> dict[str, Any]:
    """A run as a row of the panel: what the record says, the parts a table sorts by; ``where``: its
    folder as Lab names it."""
    commit = record.commit or {}
    return {"folder": where,
        "id": record.id, "notebook": record.notebook, "status": record.status, "trigger": record.trigger,
        "commit": commit.get("sha"), "dirty": bool(commit.get("dirty")), "branch": commit.get("branch"),
        "queued_at": record.queued_at, "started_at": record.started_at, "finished_at": record.finished_at,
        "duration_s": record.duration_s, "executor": record.executor.get("name"), "parameters": record.parameters,
        "metrics": record.metrics, "error": record.error, "sweep": record.sweep, "curves": record.curves,
    }  # fmt: skip
