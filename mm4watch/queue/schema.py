"""How the queue is stored: its tables and the columns added since, an entry's shape (``Entry``)
and how a row becomes one, what ``Queue.add`` did (``Added``), and a request's identity."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

SCHEMA = """
create table if not exists entries (
    id integer primary key autoincrement,
    notebook text not null,
    trigger text not null,
    content blob,
    commit_sha text,
    parameters text not null default '{}',
    executor text,
    state text not null default 'queued',
    queued_at real not null,
    not_before real not null default 0,
    attempts integer not null default 0,
    last_error text,
    run_id text,
    pid integer,
    pid_started real,
    requeued integer not null default 0
);
create index if not exists entries_state on entries(state, id);
create table if not exists seen (notebook text primary key, code_hash text not null);
create table if not exists meta (key text primary key, value text);
"""


# columns added after the first release: added in place to an existing queue
ADDED_COLUMNS = (
    ("identity", "text"),
    ("triggers", "text not null default '[]'"),
    ("merged_into", "integer"),
    ("note", "text"),
    ("finished_at", "real"),
    ("start_failures", "integer not null default 0"),
    ("detail", "text"),
    ("content_sha256", "text"),
    ("sweep", "text"),
)


# an entry that ended keeps what it was, not the notebook's bytes (they are in its run's folder)
ENDED = "('done', 'superseded', 'removed')"


DROP_CONTENT = f"""
create trigger if not exists entries_drop_content after update of state on entries
when new.state in {ENDED} and new.content is not null
begin update entries set content = null where id = new.id; end;
"""


@dataclass(frozen=True)
class Entry:
    id: int
    notebook: str
    trigger: str
    content: bytes | None
    commit_sha: str | None
    parameters: dict[str, Any] = field(default_factory=dict)
    executor: str | None = None
    state: str = "queued"
    queued_at: float = 0.0
    not_before: float = 0.0
    attempts: int = 0
    last_error: str | None = None
    run_id: str | None = None
    pid: int | None = None
    pid_started: float | None = None
    requeued: int = 0
    identity: str | None = None
    triggers: list[dict[str, Any]] = field(default_factory=list)  # every request this entry answers
    merged_into: int | None = None
    note: str | None = None  # why it was merged or superseded, for `queue` and `status`
    finished_at: float | None = None
    start_failures: int = 0
    detail: dict[str, Any] = field(default_factory=dict)  # a note's facts as data: {"operation": "checkout"}
    content_sha256: str | None = None  # the bytes' digest, kept when they are dropped
    sweep: dict[str, Any] | None = None  # one run of a sweep: {"id", "index", "of"} (mm4watch sweep)


@dataclass(frozen=True)
class Added:
    """What ``Queue.add`` did: a new entry, or the request merged into an existing one."""

    id: int  # the request's own row (state queued, or merged)
    merged_into: Entry | None = None  # the entry that answers it, as it was when merged
    superseded: tuple[int, ...] = ()


COLUMNS = [
    "id",
    "notebook",
    "trigger",
    "content",
    "commit_sha",
    "parameters",
    "executor",
    "state",
    "queued_at",
    "not_before",
    "attempts",
    "last_error",
    "run_id",
    "pid",
    "pid_started",
    "requeued",
    *(name for name, _ in ADDED_COLUMNS),
]


def to_entry(row: tuple[Any, ...]) -> Entry:
    data = dict(zip(COLUMNS, row, strict=True))
    data["parameters"] = json.loads(data["parameters"] or "{}")
    data["triggers"] = json.loads(data["triggers"] or "[]")
    data["detail"] = json.loads(data["detail"] or "{}")
    data["sweep"] = json.loads(data["sweep"]) if data["sweep"] else None
    return Entry(**data)


def insert(db: sqlite3.Connection, **values: Any) -> int:
    """One new entry; ``values`` by column name (names from this module only), the rest as defaulted."""
    columns, marks = ", ".join(values), ", ".join("?" * len(values))
    return int(db.execute(f"insert into entries ({columns}) values ({marks})", tuple(values.values())).lastrowid or 0)


def identity(
    notebook: str, content: bytes | None, parameters: dict[str, Any] | None, executor: str | None, sweep: str = ""
) -> str:
    """What makes two requests the same request (see the module docstring); a sweep's runs are its own."""
    digest = hashlib.sha256(content).hexdigest() if content is not None else None
    key = json.dumps(
        [notebook, digest, parameters or {}, executor or ""] + ([sweep] if sweep else []), sort_keys=True, default=str
    )
    return hashlib.sha256(key.encode()).hexdigest()


def digest(content: bytes | None) -> str | None:
    return hashlib.sha256(content).hexdigest() if content is not None else None


def park(db: sqlite3.Connection, entry_id: int, error: str) -> None:
    db.execute(
        "update entries set state = 'parked', pid = null, pid_started = null, last_error = ? where id = ?",
        (error, entry_id),
    )
