"""The persistent run queue: SQLite under ``.mm4/``, shared by the daemon, the
git hook and ``mm4watch run --queue``.

An entry keeps what a run needs to happen later, exactly: the notebook's bytes
at queue time, its trigger, parameters and executor. States::

    queued -> claimed (an exec process runs it; its pid is kept) -> done
           -> superseded (an older save: a newer save of the same notebook and executor came)
           -> removed (mm4watch queue remove/clear)
           -> rejected (it cannot run as it is: a broken notebook; the reason is kept)
           -> parked (its process failed to start it several times; the error is kept)
    merged: a request that asked for a run already queued, running or just done
    git: not a request: git itself rewrote the notebook (checkout, reset, stash...); kept to say so
    refused: a save that queued nothing (bad JSON, a bad tag option, a near miss of the tag); kept to say so

A request's identity is its notebook, the sha256 of its bytes, its parameters,
its executor (and its sweep, for a sweep's run). A request whose identity matches an entry that is queued or
running, or (a save or a commit) that is the notebook's latest entry and
finished within ``MERGE_WINDOW_S``, runs nothing: it is kept as ``merged`` into that entry,
whose ``triggers`` gain it (and, when it is a commit, its commit). Only a
``save`` ever replaces an unstarted ``save``; manual requests, commits and
reruns are never replaced.

A claimed entry whose process died goes back to ``queued`` (before its run
started) or is reconciled with its run record (after), so nothing is lost
or run twice. Every write is one short transaction (WAL, one writer at a time).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from ..core.durations import clock_time as clock
from ..core.errors import Mm4Error
from .schema import (
    ADDED_COLUMNS,
    COLUMNS,
    DROP_CONTENT,
    ENDED,
    SCHEMA,
    Added,
    Entry,
    digest,
    identity,
    insert,
    park,
    to_entry,
)

QUEUE_NAME = "queue.sqlite"
MAX_QUEUED = 1000
MERGE_WINDOW_S = 300.0  # a request for what just ran is the same request, arriving late
MAX_START_FAILURES = 4  # a process that fails before its run starts: retried, then parked
START_BACKOFF_S = (2.0, 10.0, 30.0)  # the waits between those tries
# may arrive after its run ended (a save's debounce, a commit of it); a manual request is a new run
LATE_TRIGGERS = frozenset({"save", "commit"})
STATE_WORDS = {"queued": "queued", "claimed": "running", "done": "just run"}  # an entry a request joined, in words


class QueueFull(Mm4Error):
    """``MAX_QUEUED`` runs wait already: nothing is added."""


class Queue:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / QUEUE_NAME
        state_dir.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            if db.execute("pragma page_count").fetchone()[0] == 0:  # new: space freed is given back
                db.execute("pragma auto_vacuum = incremental")
            db.executescript(SCHEMA)
            have = {row[1] for row in db.execute("pragma table_info(entries)")}
            for name, kind in ADDED_COLUMNS:
                if name not in have:
                    try:
                        db.execute(f"alter table entries add column {name} {kind}")
                    except sqlite3.OperationalError:
                        pass  # another process added it first
            db.executescript(DROP_CONTENT)
            self._reclaim(db)

    @staticmethod
    def _reclaim(db: sqlite3.Connection) -> None:
        """Drop the bytes of ended entries (a queue from before the trigger) and give the space back."""
        try:
            db.execute(f"update entries set content = null where content is not null and state in {ENDED}")
            free, size = (db.execute(f"pragma {name}").fetchone()[0] for name in ("freelist_count", "page_size"))
            if free * size < 4 << 20:
                return
            if db.execute("pragma auto_vacuum").fetchone()[0] == 2:
                db.execute("pragma incremental_vacuum")
            else:  # a queue made before: once, as incremental from now on
                db.execute("pragma auto_vacuum = incremental")
                db.execute("vacuum")
        except sqlite3.OperationalError:
            pass  # busy (another process holds it): the next one does it

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
        branch: str | None = None,
        sweep: dict[str, Any] | None = None,
    ) -> Added:
        """Queue a request for a run: merged into the same request, or replacing an older save."""
        now = time.time()
        ident = identity(notebook, content, parameters, executor, (sweep or {}).get("id", ""))
        asked: dict[str, Any] = {"trigger": trigger, "at": now}
        if commit_sha:
            asked.update(commit=commit_sha, branch=branch)
        with self._write() as db:
            target = self._same_request(db, notebook, ident, now, late=trigger in LATE_TRIGGERS)
            if target is not None:
                return self._merge(
                    db, target, notebook, trigger, content, commit_sha, parameters, executor, ident, asked, now
                )
            waiting = db.execute("select count(*) from entries where state = 'queued'").fetchone()[0]
            superseded: list[int] = []
            if trigger == "save":
                superseded = [
                    r[0]
                    for r in db.execute(
                        "select id from entries where state = 'queued' and trigger = 'save' and notebook = ? "
                        "and coalesce(executor, '') = ? and triggers not like '%\"commit\"%' "
                        "and coalesce(json_extract(sweep, '$.id'), '') != ?",  # never a run of its own sweep
                        (notebook, executor or "", (sweep or {}).get("id", "\0")),
                    )
                ]
                waiting -= len(superseded)
            if waiting >= MAX_QUEUED:
                raise QueueFull(
                    f"the queue is full ({waiting} runs waiting); nothing was added. "
                    "See `mm4watch queue`, remove what is not needed (`mm4watch queue clear`), then try again"
                )
            new_id = insert(
                db, notebook=notebook, trigger=trigger, content=content, commit_sha=commit_sha,
                parameters=json.dumps(parameters or {}), executor=executor, queued_at=now, identity=ident,
                triggers=json.dumps([asked]), content_sha256=digest(content), sweep=json.dumps(sweep) if sweep else None,
            )  # fmt: skip
            for old in superseded:
                db.execute(
                    "update entries set state = 'superseded', note = ? where id = ?",
                    (f"replaced by the save of {clock(now)} (entry {new_id})", old),
                )
            return Added(new_id, None, tuple(superseded))

    @staticmethod
    def _same_request(db: sqlite3.Connection, notebook: str, ident: str, now: float, late: bool) -> Entry | None:
        row = db.execute(
            f"select {', '.join(COLUMNS)} from entries where identity = ? and state in ('queued', 'claimed') "
            "order by id limit 1",
            (ident,),
        ).fetchone()
        if row is not None:
            return to_entry(row)
        if not late:
            return None
        # just done, and nothing else asked of this notebook since: the same save or commit, seen late
        row = db.execute(
            f"select {', '.join(COLUMNS)} from entries where notebook = ? "
            "and state in ('queued', 'claimed', 'done', 'git') order by id desc limit 1",
            (notebook,),
        ).fetchone()
        if row is None:
            return None
        latest = to_entry(row)
        if latest.identity == ident and latest.state == "done" and (latest.finished_at or 0) >= now - MERGE_WINDOW_S:
            return latest
        return None

    @staticmethod
    def _merge(
        db: sqlite3.Connection,
        target: Entry,
        notebook: str,
        trigger: str,
        content: bytes | None,
        commit_sha: str | None,
        parameters: dict[str, Any] | None,
        executor: str | None,
        ident: str,
        asked: dict[str, Any],
        now: float,
    ) -> Added:
        triggers = [*target.triggers, asked]
        # a commit of the same bytes makes the run a commit's run, clean, even when it started as a save;
        # the newest commit of those bytes (an amend) is the one that still exists
        sha = commit_sha or target.commit_sha
        db.execute(
            "update entries set triggers = ?, commit_sha = ? where id = ?", (json.dumps(triggers), sha, target.id)
        )
        state = STATE_WORDS[target.state]
        note = f"same content as entry {target.id} ({target.trigger} of {clock(target.queued_at)}, {state})"
        new_id = insert(
            db, notebook=notebook, trigger=trigger, commit_sha=commit_sha, parameters=json.dumps(parameters or {}),
            executor=executor, queued_at=now, identity=ident, triggers=json.dumps([asked]), state="merged",
            merged_into=target.id, note=note + (f", run {target.run_id}" if target.run_id else ""), finished_at=now,
        )  # fmt: skip
        merged = Entry(**{**target.__dict__, "triggers": triggers, "commit_sha": sha})
        return Added(new_id, merged, ())

    def asked_before(self, notebook: str, content: bytes, last: int = 50) -> bool:
        """Whether a recent request for ``notebook`` carried exactly these bytes."""
        with self._db() as db:
            rows = db.execute(
                "select content_sha256, content from entries where notebook = ? "
                "and (content_sha256 is not null or content is not null) order by id desc limit ?",
                (notebook, last),
            ).fetchall()
        wanted = digest(content)
        return any((sha or digest(old)) == wanted for sha, old in rows)

    def note_refused(self, notebook: str, reason: str, trigger: str = "save") -> None:
        """A save (or a commit's notebook) that queued nothing although it may have been meant to (kept to say so)."""
        self._note(notebook, trigger, "refused", reason, {"reason": reason})

    def note_git(self, notebook: str, operation: str) -> None:
        """Git rewrote ``notebook`` (not a save): kept to say so, and so that the user's next
        edit, even back to content that ran before, is a new request."""
        note = f"changed by git {operation} at {clock(time.time())}: not a run"
        self._note(notebook, "git", "git", note, {"operation": operation})

    def _note(self, notebook: str, trigger: str, state: str, note: str, detail: dict[str, Any]) -> None:
        now = time.time()
        with self._write() as db:
            insert(
                db, notebook=notebook, trigger=trigger, queued_at=now, state=state, note=note, finished_at=now,
                detail=json.dumps(detail),
            )  # fmt: skip

    # -- the daemon's side ----------------------------------------------------

    def next_ready(self, busy_executors: set[str] | None = None) -> Entry | None:
        """The oldest queued entry that may start now (its executor not busy)."""
        with self._db() as db:
            rows = db.execute(
                f"select {', '.join(COLUMNS)} from entries where state = 'queued' and not_before <= ? order by id",
                (time.time(),),
            ).fetchall()
        for row in rows:
            entry = to_entry(row)
            if not busy_executors or (entry.executor or "") not in busy_executors:
                return entry
        return None

    def claim(self, entry_id: int, pid: int, pid_started: float) -> bool:
        with self._write() as db:
            return (
                db.execute(
                    "update entries set state = 'claimed', pid = ?, pid_started = ?, attempts = attempts + 1 "
                    "where id = ? and state = 'queued'",
                    (pid, pid_started, entry_id),
                ).rowcount
                == 1
            )

    def reclaim(self, entry_id: int, pid: int, pid_started: float) -> bool:
        """A new process takes over a claimed entry whose process died."""
        with self._write() as db:
            return (
                db.execute(
                    "update entries set pid = ?, pid_started = ? where id = ? and state = 'claimed'",
                    (pid, pid_started, entry_id),
                ).rowcount
                == 1
            )

    def set_run(self, entry_id: int, run_id: str) -> None:
        with self._write() as db:
            db.execute("update entries set run_id = ? where id = ?", (run_id, entry_id))

    def done(self, entry_id: int) -> Entry:
        """Mark it done; returns it as it is then, with every trigger merged into it so far."""
        with self._write() as db:
            db.execute(
                "update entries set state = 'done', last_error = null, finished_at = coalesce(finished_at, ?) "
                "where id = ?",
                (time.time(), entry_id),
            )
            row = db.execute(f"select {', '.join(COLUMNS)} from entries where id = ?", (entry_id,)).fetchone()
        return to_entry(row)

    def failed_to_start(self, entry_id: int, error: str, backoff_s: tuple[float, ...] = START_BACKOFF_S) -> Entry:
        """Its process failed before the run began (a broken mm4.toml, a crash): retry later, or park it."""
        with self._write() as db:
            db.execute("update entries set start_failures = start_failures + 1 where id = ?", (entry_id,))
            failures = db.execute("select start_failures from entries where id = ?", (entry_id,)).fetchone()[0]
            if failures >= MAX_START_FAILURES:
                park(
                    db,
                    entry_id,
                    f"{error} (failed to start {failures} times; fix it, then `mm4watch queue retry {entry_id}`, "
                    f"or `mm4watch queue remove {entry_id}`)",
                )
            else:
                delay = backoff_s[min(failures, len(backoff_s)) - 1]
                db.execute(
                    "update entries set state = 'queued', pid = null, pid_started = null, not_before = ?, "
                    "last_error = ? where id = ?",
                    (
                        time.time() + delay,
                        f"{error} (try {failures + 1} of {MAX_START_FAILURES} in {delay:.0f}s)",
                        entry_id,
                    ),
                )
            row = db.execute(f"select {', '.join(COLUMNS)} from entries where id = ?", (entry_id,)).fetchone()
        return to_entry(row)

    def retry(self, entry_id: int) -> bool:
        """A parked or rejected entry, queued again now."""
        with self._write() as db:
            return (
                db.execute(
                    "update entries set state = 'queued', not_before = 0, start_failures = 0, last_error = null "
                    "where id = ? and state in ('parked', 'rejected')",
                    (entry_id,),
                ).rowcount
                == 1
            )

    def park(self, entry_id: int, error: str) -> None:
        """It cannot start as it is (a row this version cannot read): kept aside with the reason,
        shown by `status`, `queue retry` puts it back."""
        with self._write() as db:
            park(db, entry_id, error)

    def reject(self, entry_id: int, error: str) -> None:
        """It cannot run as it is (a broken notebook, a bad config): kept, with the reason."""
        with self._write() as db:
            db.execute("update entries set state = 'rejected', last_error = ? where id = ?", (error, entry_id))

    def release(
        self,
        entry_id: int,
        *,
        delay_s: float = 0.0,
        error: str | None = None,
        requeue: bool = False,
        away_since: float | None = None,
    ) -> None:
        """Back to the queue: its run did not start (e.g. the Mini is away: since ``away_since``, kept in
        ``detail`` for status), or is requeued."""
        with self._write() as db:
            row = db.execute("select detail from entries where id = ?", (entry_id,)).fetchone()
            detail = json.loads((row[0] if row else None) or "{}")
            if away_since is None:
                detail.pop("away_since", None)
            else:
                detail["away_since"] = away_since
            db.execute(
                "update entries set state = 'queued', pid = null, pid_started = null, not_before = ?, "
                "last_error = ?, run_id = case when ? then null else run_id end, requeued = requeued + ?, "
                "detail = ? where id = ?",
                (time.time() + delay_s, error, requeue, int(requeue), json.dumps(detail), entry_id),
            )

    def get(self, entry_id: int) -> Entry:
        with self._db() as db:
            row = db.execute(f"select {', '.join(COLUMNS)} from entries where id = ?", (entry_id,)).fetchone()
        if row is None:
            raise Mm4Error(f"no queue entry {entry_id}")
        return to_entry(row)

    def entries(self, states: tuple[str, ...] = ("queued", "claimed"), sweeps: bool = False) -> list[Entry]:
        marks, only = ",".join("?" * len(states)), " and sweep is not null" if sweeps else ""
        with self._db() as db:
            rows = db.execute(
                f"select {', '.join(COLUMNS)} from entries where state in ({marks}){only} order by id", states
            ).fetchall()
        return [to_entry(row) for row in rows]

    def remove(self, entry_id: int) -> bool:
        with self._write() as db:
            return (
                db.execute(
                    "update entries set state = 'removed' where id = ? and state in ('queued', 'parked', 'rejected')",
                    (entry_id,),
                ).rowcount
                == 1
            )

    def recent(self, states: tuple[str, ...], since_s: float) -> list[Entry]:
        """Entries in ``states`` queued within the last ``since_s`` seconds (merged, superseded: what to show)."""
        marks = ",".join("?" * len(states))
        with self._db() as db:
            rows = db.execute(
                f"select {', '.join(COLUMNS)} from entries where state in ({marks}) and queued_at >= ? order by id",
                (*states, time.time() - since_s),
            ).fetchall()
        return [to_entry(row) for row in rows]

    def clear(self) -> int:
        with self._write() as db:
            return db.execute("update entries set state = 'removed' where state = 'queued'").rowcount

    # -- what the watcher has seen ---------------------------------------------

    def seen(self, notebook: str) -> str | None:
        with self._db() as db:
            row = db.execute("select code_hash from seen where notebook = ?", (notebook,)).fetchone()
        return row[0] if row else None

    def meta(self, key: str) -> str | None:
        with self._db() as db:
            row = db.execute("select value from meta where key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        with self._write() as db:
            db.execute("insert or replace into meta values (?, ?)", (key, value))

    def has_seen(self) -> bool:
        """Whether a daemon ever looked at this project's notebooks."""
        with self._db() as db:
            return db.execute("select 1 from seen limit 1").fetchone() is not None

    def see(self, notebook: str, code_hash: str) -> None:
        with self._write() as db:
            db.execute("insert or replace into seen values (?, ?)", (notebook, code_hash))
