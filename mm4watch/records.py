"""The run record: what ``run.json`` holds, as a frozen dataclass with a schema version."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

from .fsutil import atomic_write_json

SCHEMA_VERSION = 1
RECORD_NAME = "run.json"
EXECUTED_NAME = "executed.ipynb"
LOG_NAME = "run.log"
PATCH_NAME = "source.patch"
BUILD_LOG_NAME = "build.log"
HTML_NAME = "executed.html"  # the executed notebook rendered for a browser (report.py)
RESERVED_NAMES = frozenset({RECORD_NAME, EXECUTED_NAME, LOG_NAME, PATCH_NAME, BUILD_LOG_NAME, HTML_NAME})

Status = Literal["queued", "running", "succeeded", "failed", "timeout", "cancelled", "interrupted"]
Trigger = Literal["manual", "save", "commit"]
STATUSES: tuple[Status, ...] = get_args(Status)
FINAL_STATUSES: frozenset[Status] = frozenset({"succeeded", "failed", "timeout", "cancelled", "interrupted"})


def where(error: dict[str, Any] | None) -> str:
    """Where a run failed, as Jupyter shows it: "code cell 2, line 3" (empty when unknown)."""
    if not error:
        return ""
    if error.get("code_cell"):
        text = f"code cell {error['code_cell']}"
        return text + (f", line {error['line']}" if error.get("line") else "")
    return f"cell {error['cell']}" if error.get("cell") is not None else ""


def as_trigger(value: str) -> Trigger:
    """A trigger read back from the queue or a file, checked."""
    if value not in get_args(Trigger):
        raise ValueError(f"not a trigger: {value!r}")
    return value  # type: ignore[return-value]


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")


def parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class RunRecord:
    id: str
    notebook: str  # path relative to the project root, '/'-separated
    status: Status
    trigger: Trigger
    queued_at: str
    commit: dict[str, Any] | None = None  # {sha, branch, dirty} or None outside git
    executor: dict[str, Any] = field(default_factory=dict)  # {name, type, host, arch, ...}
    parameters: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    timeout_s: float | None = None
    error: dict[str, Any] | None = None  # {cell, ename, evalue}
    outputs: list[dict[str, Any]] = field(default_factory=list)  # {path, size, sha256}
    source: dict[str, Any] = field(default_factory=dict)  # {sha256, code_hash, patch}
    rerun_of: str | None = None  # the run whose exact input this run executed again
    key: str | None = None  # names.run_key(id): how engines, shells and remote folders name this run
    triggers: list[dict[str, Any]] = field(
        default_factory=list
    )  # every request this run answered: {trigger, at, commit?}
    inputs: dict[str, Any] | None = None  # earlier runs it could see: {mode, runs} or {mode, count, newest}
    metrics: dict[str, float] = field(default_factory=dict)  # numbers it reported (metrics.py), dotted keys
    schema: int = SCHEMA_VERSION

    @property
    def stem(self) -> str:
        return Path(self.notebook).stem

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def evolve(self, **changes: Any) -> RunRecord:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # schema first: a reader sees the version before anything else
        return {"schema": data.pop("schema"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def write_record(run_dir: Path, record: RunRecord) -> None:
    atomic_write_json(run_dir / RECORD_NAME, record.to_dict())


def amend_triggers(run_dir: Path, triggers: list[dict[str, Any]]) -> RunRecord | None:
    """Record every request a run answered; a commit among them makes the run that commit's, clean.

    Requests merged into a run (same notebook bytes, parameters and executor) may
    arrive while it runs or just after; the record gains them here. Returns the
    record as written, or None when there was nothing to change."""
    import fcntl

    with open(run_dir / ".run.json.lock", "a") as lock:  # the run's process and a merge may both amend
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = read_record(run_dir)
        listed = [trigger_for_record(t) for t in triggers]
        if not listed or listed == record.triggers:
            return None
        changes: dict[str, Any] = {"triggers": listed}
        commits = [t for t in listed if t.get("commit")]
        current = record.commit or {}
        if commits and (current.get("sha") != commits[-1]["commit"] or current.get("dirty")):
            latest = commits[-1]
            changes["commit"] = {"sha": latest["commit"], "branch": latest.get("branch"), "dirty": False}
            # the bytes are the commit's: no patch is needed to rebuild them
            changes["source"] = {**record.source, "patch": None}
        record = record.evolve(**changes)
        write_record(run_dir, record)
        return record


def trigger_for_record(trigger: dict[str, Any]) -> dict[str, Any]:
    at = trigger.get("at")
    when = (
        datetime.fromtimestamp(at, timezone.utc).astimezone().isoformat(timespec="milliseconds")
        if isinstance(at, (int, float))
        else at
    )
    return {k: v for k, v in {**trigger, "at": when}.items() if v is not None}


def read_record(run_dir: Path) -> RunRecord:
    with open(run_dir / RECORD_NAME, encoding="utf-8") as fh:
        return RunRecord.from_dict(json.load(fh))
