"""The persistent run queue: SQLite under ``.mm4/``, shared by the daemon, the
git hook and ``mm4watch run --queue``.

An entry keeps what a run needs to happen later, exactly: the notebook's bytes
at queue time, its trigger, parameters and executor. States::

    queued -> claimed (an exec process runs it; its pid is kept) -> done
           -> superseded (a newer save of the same notebook came first)
           -> removed (mm4watch queue remove/clear)
           -> rejected (it cannot run as it is: a broken notebook; the reason is kept)

A claimed entry whose process died goes back to ``queued`` (before its run
started) or is reconciled with its run record (after), so nothing is lost
or run twice. Every write is one short transaction (WAL, one writer at a time).
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import Mm4Error

QUEUE_NAME = "queue.sqlite"
MAX_QUEUED = 1000
_SCHEMA = """
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
"""


class QueueFull(Mm4Error):
    pass


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


_COLUMNS = [
    "id", "notebook", "trigger", "content", "commit_sha", "parameters", "executor", "state", "queued_at",
    "not_before", "attempts", "last_error", "run_id", "pid", "pid_started", "requeued",
]


def _entry(row: tuple[Any, ...]) -> Entry:
    data = dict(zip(_COLUMNS, row))
    data["parameters"] = json.loads(data["parameters"] or "{}")
    return Entry(**data)


class Queue:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / QUEUE_NAME
        state_dir.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("pragma journal_mode=wal")
            db.execute("pragma busy_timeout=30000")
            yield db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._db() as db:
            db.execute("begin immediate")
            try:
                yield db
                db.execute("commit")
            except BaseException:
                db.execute("rollback")
                raise

    # -- adding ---------------------------------------------------------------

    def add(
        self,
        notebook: str,
        trigger: str,
        *,
        content: bytes | None = None,
        commit_sha: str | None = None,
        parameters: dict[str, Any] | None = None,
        executor: str | None = None,
        supersede: bool = True,
    ) -> int:
        """Queue a run; a newer entry replaces the notebook's entries not yet started."""
        with self._write() as db:
            waiting = db.execute("select count(*) from entries where state = 'queued'").fetchone()[0]
            if supersede:
                gone = db.execute(
                    "update entries set state = 'superseded' where state = 'queued' and notebook = ?", (notebook,)
                ).rowcount
                waiting -= gone
            if waiting >= MAX_QUEUED:
                raise QueueFull(
                    f"the queue is full ({waiting} runs waiting); nothing was added. "
                    "See `mm4watch queue`, remove what is not needed (`mm4watch queue clear`), then try again"
                )
            cursor = db.execute(
                "insert into entries (notebook, trigger, content, commit_sha, parameters, executor, queued_at) "
                "values (?, ?, ?, ?, ?, ?, ?)",
                (notebook, trigger, content, commit_sha, json.dumps(parameters or {}), executor, time.time()),
            )
            return int(cursor.lastrowid or 0)

    # -- the daemon's side ----------------------------------------------------

    def next_ready(self, busy_executors: set[str] | None = None) -> Entry | None:
        """The oldest queued entry that may start now (its executor not busy)."""
        with self._db() as db:
            rows = db.execute(
                f"select {', '.join(_COLUMNS)} from entries where state = 'queued' and not_before <= ? order by id",
                (time.time(),),
            ).fetchall()
        for row in rows:
            entry = _entry(row)
            if not busy_executors or (entry.executor or "") not in busy_executors:
                return entry
        return None

    def claim(self, entry_id: int, pid: int, pid_started: float) -> bool:
        with self._write() as db:
            return db.execute(
                "update entries set state = 'claimed', pid = ?, pid_started = ?, attempts = attempts + 1 "
                "where id = ? and state = 'queued'",
                (pid, pid_started, entry_id),
            ).rowcount == 1

    def reclaim(self, entry_id: int, pid: int, pid_started: float) -> bool:
        """A new process takes over a claimed entry whose process died."""
        with self._write() as db:
            return db.execute(
                "update entries set pid = ?, pid_started = ? where id = ? and state = 'claimed'",
                (pid, pid_started, entry_id),
            ).rowcount == 1

    def set_run(self, entry_id: int, run_id: str) -> None:
        with self._write() as db:
            db.execute("update entries set run_id = ? where id = ?", (run_id, entry_id))

    def done(self, entry_id: int) -> None:
        with self._write() as db:
            db.execute("update entries set state = 'done', last_error = null where id = ?", (entry_id,))

    def reject(self, entry_id: int, error: str) -> None:
        """It cannot run as it is (a broken notebook, a bad config): kept, with the reason."""
        with self._write() as db:
            db.execute("update entries set state = 'rejected', last_error = ? where id = ?", (error, entry_id))

    def release(self, entry_id: int, *, delay_s: float = 0.0, error: str | None = None, requeue: bool = False) -> None:
        """Back to the queue: its run did not start (e.g. the Mini is away), or is requeued."""
        with self._write() as db:
            db.execute(
                "update entries set state = 'queued', pid = null, pid_started = null, not_before = ?, "
                "last_error = ?, run_id = case when ? then null else run_id end, requeued = requeued + ? where id = ?",
                (time.time() + delay_s, error, requeue, int(requeue), entry_id),
            )

    def get(self, entry_id: int) -> Entry:
        with self._db() as db:
            row = db.execute(f"select {', '.join(_COLUMNS)} from entries where id = ?", (entry_id,)).fetchone()
        if row is None:
            raise Mm4Error(f"no queue entry {entry_id}")
        return _entry(row)

    def entries(self, states: tuple[str, ...] = ("queued", "claimed")) -> list[Entry]:
        marks = ",".join("?" * len(states))
        with self._db() as db:
            rows = db.execute(
                f"select {', '.join(_COLUMNS)} from entries where state in ({marks}) order by id", states
            ).fetchall()
        return [_entry(row) for row in rows]

    def remove(self, entry_id: int) -> bool:
        with self._write() as db:
            return db.execute(
                "update entries set state = 'removed' where id = ? and state = 'queued'", (entry_id,)
            ).rowcount == 1

    def clear(self) -> int:
        with self._write() as db:
            return db.execute("update entries set state = 'removed' where state = 'queued'").rowcount

    # -- what the watcher has seen ---------------------------------------------

    def seen(self, notebook: str) -> str | None:
        with self._db() as db:
            row = db.execute("select code_hash from seen where notebook = ?", (notebook,)).fetchone()
        return row[0] if row else None

    def see(self, notebook: str, code_hash: str) -> None:
        with self._write() as db:
            db.execute("insert or replace into seen values (?, ?)", (notebook, code_hash))
