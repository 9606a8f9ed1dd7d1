"""Result folders and the history index.

Each run owns ``results/<stem>_<YYYYmmdd_HHMMSS>[_N]/``, made with one
``mkdir`` (which fails rather than reuse a folder), so nothing is ever
overwritten. The folders are the truth; ``.mm4/history.sqlite`` is a cache of
their ``run.json`` files, rebuilt from scratch whenever it is missing or
unreadable. A query lists the results folder: new folders are read, vanished
ones dropped, and runs not yet final (queued, running: a handful) re-read.
A final record is rewritten only when a later request joins its run (``amend_triggers``),
which marks it to be read again; so a finished run costs only its name in
the listing, and nothing at all while the results folder's own mtime shows no
folder was added or removed (trusted only once that mtime is older than the
file system's timestamp granularity, as git does for its index).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
import unicodedata
from collections.abc import Iterable
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.errors import RunNotFound
from .records import RECORD_NAME, BadRecord, RunRecord, parse_iso, read_record

INDEX_NAME = "history.sqlite"
_INDEX_VERSION = 7  # 6: records are checked for shape before they are indexed; 7: by notebook path
_SETTLED_NS = 2_000_000_000  # an mtime this old cannot hide a same-tick change


def create_run_dir(results_dir: Path, stem: str, when: datetime) -> tuple[str, Path]:
    """Make a fresh run folder; two runs in the same second get ``_2``, ``_3``..."""
    from ..core.names import run_stem

    results_dir.mkdir(parents=True, exist_ok=True)
    base = f"{run_stem(stem)}_{when.strftime('%Y%m%d_%H%M%S')}"
    for n in range(1, 10_000):
        run_id = base if n == 1 else f"{base}_{n}"
        path = results_dir / run_id
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return run_id, path
    raise RuntimeError(f"no free run folder name for {base} in {results_dir}")


class History:
    """Query past runs, newest first, through the index."""

    def __init__(self, results_dir: Path, state_dir: Path) -> None:
        self.results_dir = results_dir
        self.index_path = state_dir / INDEX_NAME

    def _connect(self) -> sqlite3.Connection:
        try:
            self.index_path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.index_path, timeout=30)
            db.execute("pragma journal_mode=wal")
            return _prepared(db)
        except sqlite3.DatabaseError:
            # A corrupt cache is thrown away: the folders hold the truth.
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.index_path) + suffix).unlink(missing_ok=True)
            return self._connect()
        except OSError:
            # nowhere to keep an index (a read-only project, inside a container): one in memory
            return _prepared(sqlite3.connect(":memory:"))

    def _sync(self, db: sqlite3.Connection) -> None:
        try:
            listing_ns = os.stat(self.results_dir).st_mtime_ns
        except FileNotFoundError:
            listing_ns = None
        row = db.execute("select value from meta where key = 'listing'").fetchone()
        if listing_ns is not None and row and row[0] == f"{listing_ns}:settled":
            open_ids = [r[0] for r in db.execute("select id from runs where final = 0")]
            self._store(db, [self.results_dir / run_id for run_id in open_ids], [])
            return
        final = {r[0]: bool(r[1]) for r in db.execute("select id, final from runs")}
        seen: set[str] = set()
        to_read: list[Path] = []
        try:
            entries = list(os.scandir(self.results_dir))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            # a dot-named notebook's runs are folders with a dot too; other dot folders are not runs
            if entry.name.startswith(".") and not os.path.exists(os.path.join(entry.path, RECORD_NAME)):
                continue
            seen.add(entry.name)
            if not final.get(entry.name):
                to_read.append(Path(entry.path))
        complete = self._store(db, to_read, [run_id for run_id in final if run_id not in seen])
        settled = listing_ns is not None and complete and time.time_ns() - listing_ns > _SETTLED_NS
        with db:
            db.execute(
                "insert or replace into meta values ('listing', ?)",
                (f"{listing_ns}:{'settled' if settled else 'open'}",),
            )

    def _store(self, db: sqlite3.Connection, folders: list[Path], gone: list[str]) -> bool:
        """Index the records in ``folders``; False when one had no readable run.json."""
        rows, complete = [], True
        for folder in folders:
            record = _load(folder)
            if record is None:
                # not written yet, unreadable, or the folder went away: look again next time
                complete = False
                if not folder.exists():
                    gone.append(folder.name)
                continue
            created = parse_iso(record.queued_at)
            rows.append(
                (
                    folder.name,
                    record.is_final,
                    created.timestamp() if created else 0.0,
                    record.stem,
                    record.notebook,
                    record.status,
                    json.dumps(record.to_dict()),
                )
            )
        if rows or gone:
            with db:
                db.executemany("insert or replace into runs values (?,?,?,?,?,?,?)", rows)
                db.executemany("delete from runs where id = ?", [(g,) for g in gone])
        return complete

    def refresh(self, run_id: str) -> None:
        """A final record was amended (a merged trigger): read it again at the next query."""
        with closing(self._connect()) as db, db:
            db.execute("update runs set final = 0 where id = ?", (run_id,))

    def query(
        self,
        *,
        notebook: str | None = None,
        status: str | Iterable[str] | None = None,
        limit: int | None = None,
        sort: str | None = None,
        sweep: str | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first; ``sort="acc"`` orders by a metric (or, when no run has
        that metric, a parameter) ascending, ``"-acc"`` descending, runs without it last."""
        where, args = [], []
        if notebook:
            path = self.notebook_path(notebook)
            if path is None:
                return []
            where.append("notebook = ?")
            args.append(path)
        if status:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status in ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        if sweep:
            where.append("json_extract(record, '$.sweep.id') = ?")
            args.append(sweep)
        sql = "select record from runs"
        if where:
            sql += " where " + " and ".join(where)
        order = "created desc, id desc"
        if sort:
            key = sort.removeprefix("-")
            field = "metrics" if self._has(key, "metrics") or not self._has(key, "parameters") else "parameters"
            value = f"json_extract(record, {_json_path(field, key)})"
            order = f"({value} is null), {value} {'desc' if sort.startswith('-') else 'asc'}, {order}"
        sql += f" order by {order}"
        if limit:
            sql += f" limit {int(limit)}"
        return [RunRecord.from_dict(json.loads(row[0])) for row in self._rows(sql, args)]

    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with closing(self._connect()) as db:
            self._sync(db)
            return db.execute(sql, list(args)).fetchall()

    def _has(self, key: str, field: str) -> bool:
        path = _json_path(field, key)
        return bool(self._rows(f"select 1 from runs where json_extract(record, {path}) is not null limit 1"))

    def ended(self) -> list[str]:
        """Ids of the runs that have ended, oldest first (without reading their records)."""
        return [row[0] for row in self._rows("select id from runs where final = 1 order by created, id")]

    def count(self) -> int:
        """How many runs there are (without reading their records)."""
        return int(self._rows("select count(*) from runs")[0][0])

    def notebooks(self) -> list[str]:
        """Every notebook with runs, by its project-relative path."""
        return sorted(row[0] for row in self._rows("select distinct notebook from runs"))

    def notebook_path(self, ref: str, *, prefix: bool = False) -> str | None:
        """The notebook ``ref`` names, as its project-relative path; None when no notebook with runs
        is it. A path (``notebooks/a/train.ipynb``, its tail ``a/train.ipynb``, an absolute one)
        names one notebook; a bare name (``train``) names the notebook of that name when only one
        has it, and ``prefix`` lets a unique beginning of a name do. Two candidates: ``RunNotFound``
        naming them."""
        paths = self.notebooks()
        text = unicodedata.normalize(
            "NFC", str(ref).removeprefix("./")
        )  # a Path from a notebook works too; names are kept in NFC
        if text in paths:
            return text
        alike = [p for p in paths if p.casefold() == text.casefold()]
        if len(alike) == 1:  # typed in another case (a Mac's file system ignores case)
            return alike[0]
        if "/" in text or text.endswith(".ipynb"):
            found = [p for p in paths if p.endswith("/" + text) or text.endswith("/" + p)]
        else:
            found = [p for p in paths if Path(p).stem == text] or [
                p for p in paths if Path(p).stem.casefold() == text.casefold()
            ]
            if not found and prefix:  # a beginning names a notebook only when it is unique
                starting = [p for p in paths if Path(p).stem.startswith(text)]
                found = starting if len(starting) == 1 else []
        if len(found) > 1:
            raise RunNotFound(
                f"{ref!r} names {len(found)} notebooks ({', '.join(found[:5])}); give its path, e.g. {found[0]!r}"
            )
        return found[0] if found else None

    def notebook_named(self, ref: str) -> str:
        """A notebook as ``show`` and ``history --notebook`` take it: a name, a path, or a unique
        prefix of a notebook's name; the path when a notebook has runs, else ``ref`` itself."""
        return self.notebook_path(ref, prefix=True) or ref

    def find(self, ref: str) -> tuple[RunRecord, Path]:
        """A run by id, unique id prefix, or folder path."""
        candidate = Path(ref)
        if (candidate / RECORD_NAME).is_file():
            return read_record(candidate), candidate.resolve()  # named: its damage is the answer
        exact = self.results_dir / ref
        if "/" not in ref and (exact / RECORD_NAME).is_file():
            return read_record(exact), exact
        runs = self.query()
        matches = [r for r in runs if r.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0], self.results_dir / matches[0].id
        notebook = self.notebook_path(ref)
        if notebook is not None:  # a notebook's name or path: its newest run
            newest = next(r for r in runs if r.notebook == notebook)
            return newest, self.results_dir / newest.id
        if len(matches) > 1:
            names = ", ".join(r.id for r in matches[:5])
            raise RunNotFound(f"{ref!r} matches {len(matches)} runs ({names}...); give more of the id")
        raise RunNotFound(f"no run {ref!r} in {self.results_dir}; `mm4watch history` lists the runs")


def _json_path(field: str, key: str) -> str:
    """A JSON path for SQLite's json_extract, as an SQL string literal (a key is data: quoted here)."""
    label = key.replace('"', "")  # SQLite's path syntax cannot quote a double quote inside a label
    return "'" + f'$.{field}."{label}"'.replace("'", "''") + "'"


def _prepared(db: sqlite3.Connection) -> sqlite3.Connection:
    """The index's tables, made anew when missing or of another version."""
    version = db.execute("pragma user_version").fetchone()[0]
    if version != _INDEX_VERSION:
        db.executescript(
            """
            drop table if exists runs;
            create table runs (
                id text primary key, final integer,
                created real, stem text, notebook text, status text, record text);
            create index runs_created on runs(created);
            create index runs_stem on runs(stem, created);
            create index runs_notebook on runs(notebook, created);
            create index runs_status on runs(status, created);
            create index runs_final on runs(id, final);
            drop table if exists meta;
            create table meta (key text primary key, value text);
            """
        )
        db.execute(f"pragma user_version={_INDEX_VERSION}")
        db.commit()
    return db


_WARNED: set[str] = set()


def _load(run_dir: Path) -> RunRecord | None:
    """The folder's record; None when there is none yet, or when it is not a record (said once, on
    stderr, naming the file: every reader then goes on with the good runs)."""
    try:
        return read_record(run_dir)
    except OSError:
        return None
    except BadRecord as exc:
        if str(run_dir) not in _WARNED:
            _WARNED.add(str(run_dir))
            print(f"mm4watch: skipped {exc}; fix or remove that folder", file=sys.stderr)
        return None
