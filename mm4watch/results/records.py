"""The run record: what ``run.json`` holds, as a frozen dataclass with a schema version."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

from ..core.errors import Mm4Error
from ..core.fsutil import atomic_write_json

SCHEMA_VERSION = 1
RECORD_NAME = "run.json"
EXECUTED_NAME = "executed.ipynb"
LOG_NAME = "run.log"
PATCH_NAME = "source.patch"
BUILD_LOG_NAME = "build.log"
HTML_NAME = "executed.html"  # the executed notebook rendered for a browser (report.py)
ENVIRONMENT_NAME = "environment.txt"  # what the kernel ran with (far/environment.py)
RESERVED_NAMES = frozenset(
    {RECORD_NAME, EXECUTED_NAME, LOG_NAME, PATCH_NAME, BUILD_LOG_NAME, HTML_NAME, ENVIRONMENT_NAME}
)

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
    retry_of: str | None = None  # the run this one repeats because its machine went away ([run] retry_lost)
    retried_by: str | None = None  # the run that repeated this one
    key: str | None = None  # names.run_key(id): how engines, shells and remote folders name this run
    triggers: list[dict[str, Any]] = field(
        default_factory=list
    )  # every request this run answered: {trigger, at, commit?}
    inputs: dict[str, Any] | None = None  # earlier runs it could see: {mode, runs} or {mode, count, newest[, needs]}
    metrics: dict[str, float] = field(default_factory=dict)  # numbers it reported (metrics.py), dotted keys
    warnings: list[str] = field(default_factory=list)  # what went wrong while finishing, the outcome kept
    environment: dict[str, Any] | None = None  # environment.txt's {hash, packages, python[, torch]}
    sweep: dict[str, Any] | None = None  # one run of a sweep: {"id", "index", "of"} (mm4watch sweep)
    curves: dict[str, int] = field(default_factory=dict)  # metrics logged by step (metrics.jsonl): points each
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
    def from_dict(cls, data: Any) -> RunRecord:
        """A record from its JSON; ``BadRecord`` naming the field when one has the wrong shape."""
        problem = shape_problem(data)
        if problem:
            raise BadRecord(problem)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class BadRecord(Mm4Error, ValueError):
    """A run.json whose content is not a run record (edited by hand, cut short)."""


def _is_number(value: Any) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_sha(value: Any) -> bool:
    """A git commit name as git writes it (never something git would read as an option), or none."""
    import re

    return value is None or (isinstance(value, str) and re.fullmatch(r"[0-9a-f]{7,64}", value) is not None)


def _is_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_OPTIONAL = object()
# what every field of a record must be, for every reader (history, report, show, diff, helpers, the mirror)
_SHAPES: dict[str, tuple[str, Any]] = {
    "id": ("a text", lambda v: isinstance(v, str) and bool(v)),
    "notebook": ("a path", lambda v: isinstance(v, str) and bool(v)),
    "status": ("a status", lambda v: v in get_args(Status)),
    "trigger": ("a text", lambda v: isinstance(v, str)),
    "queued_at": ("an ISO time", _is_time),
    "commit": (
        "an object with a hex sha, or null",
        lambda v: v is None or (isinstance(v, dict) and _is_sha(v.get("sha"))),
    ),
    "executor": ("an object", lambda v: isinstance(v, dict)),
    "parameters": ("an object", lambda v: isinstance(v, dict)),
    "started_at": ("an ISO time or null", lambda v: v is None or _is_time(v)),
    "finished_at": ("an ISO time or null", lambda v: v is None or _is_time(v)),
    "duration_s": ("a number or null", lambda v: v is None or _is_number(v)),
    "timeout_s": ("a number or null", lambda v: v is None or _is_number(v)),
    "error": ("an object or null", lambda v: v is None or isinstance(v, dict)),
    "outputs": (
        "a list of objects with a path",
        lambda v: isinstance(v, list) and all(isinstance(o, dict) and isinstance(o.get("path"), str) for o in v),
    ),
    "source": ("an object", lambda v: isinstance(v, dict)),
    "rerun_of": ("a text or null", lambda v: v is None or isinstance(v, str)),
    "retry_of": ("a text or null", lambda v: v is None or isinstance(v, str)),
    "retried_by": ("a text or null", lambda v: v is None or isinstance(v, str)),
    "key": ("a text or null", lambda v: v is None or isinstance(v, str)),
    "triggers": ("a list of objects", lambda v: isinstance(v, list) and all(isinstance(t, dict) for t in v)),
    "inputs": ("an object or null", lambda v: v is None or isinstance(v, dict)),
    "metrics": (
        "an object of numbers",
        lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_number(n) for k, n in v.items()),
    ),
    "sweep": ("an object or null", lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("id"), str))),
    "curves": (
        "an object of whole numbers",
        lambda v: isinstance(v, dict) and all(isinstance(n, int) and not isinstance(n, bool) for n in v.values()),
    ),
    "environment": ("an object or null", lambda v: v is None or isinstance(v, dict)),
    "warnings": ("a list of texts", lambda v: isinstance(v, list) and all(isinstance(w, str) for w in v)),
    "schema": ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
}
_REQUIRED = ("id", "notebook", "status", "trigger", "queued_at")


def shape_problem(data: Any) -> str | None:
    """What is wrong with a run.json's content, None when it is a record."""
    if not isinstance(data, dict):
        return f"not a JSON object but {type(data).__name__}"
    for name in _REQUIRED:
        if name not in data:
            return f"{name} is missing"
    for name, (kind, ok) in _SHAPES.items():
        if name in data and not ok(data[name]):
            return f"{name} is not {kind}: {json.dumps(data[name], default=str)[:60]}"
    return None


def write_record(run_dir: Path, record: RunRecord) -> None:
    atomic_write_json(run_dir / RECORD_NAME, record.to_dict())


def amend_retried_by(run_dir: Path, retry_id: str) -> None:
    """Link a run lost with its machine to the run that repeated it."""
    import fcntl

    with open(run_dir / ".run.json.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_record(run_dir, read_record(run_dir).evolve(retried_by=retry_id))


def amend_triggers(
    run_dir: Path, triggers: list[dict[str, Any]], holds: Callable[[str, str], bool] = lambda tree, sha: False
) -> RunRecord | None:
    """Record every request a run answered; a commit among them makes the run that commit's, clean,
    only when the commit holds what the run ran (``holds(source.tree, sha)``): else the commit is
    listed among its triggers and the record keeps the provenance it had.

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
        ran = record.source.get("tree")
        if (
            commits
            and (current.get("sha") != commits[-1]["commit"] or current.get("dirty"))
            and ran is not None
            and holds(ran, commits[-1]["commit"])
        ):
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
    """The record in ``run_dir``; ``BadRecord`` (a ``ValueError``) naming the file and the field when
    its content is not one (OSError when there is none)."""
    path = run_dir / RECORD_NAME
    with open(path, encoding="utf-8") as fh:
        try:
            record = RunRecord.from_dict(json.load(fh))
            if record.id != run_dir.name:  # an id is a folder's name, never a path to follow
                raise BadRecord(f"id {json.dumps(record.id)[:80]} is not its folder's name ({run_dir.name})")
            return record
        except RecursionError:
            raise BadRecord(f"{path}: nested too deep to read") from None
        except BadRecord as exc:
            raise BadRecord(f"{path}: {exc}") from None
        except ValueError as exc:  # not JSON, not UTF-8
            raise BadRecord(f"{path}: not JSON ({exc})") from None


def append_log(path: Path, line: str) -> None:
    """One line of mm4watch's own in a run's log (run.log), with its time: the one writer of such lines.
    The notebook's last output may lack its newline: the line starts on a line of its own."""
    with open(path, "a+", encoding="utf-8") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() > 0:
            fh.seek(fh.tell() - 1)
            if fh.read(1) != "\n":
                fh.write("\n")
        fh.write(f"[{now_iso()}] mm4watch: {line}\n")
