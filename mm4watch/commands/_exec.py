"""mm4watch _exec ENTRY: run one queue entry (started by the daemon, one process per run).

A process of its own per run: a crash of the daemon does not stop the run, and
``mm4watch cancel`` can signal it. Exit codes as in ``errors.EXIT_TABLE``: 0 the
notebook succeeded, 1 it failed, 75 the executor could not be reached (the entry
waits in the queue again), 2 it could not start (a broken mm4.toml: the entry
is retried with backoff, then parked with the error; it never spins).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..core import config
from ..core.errors import EXIT_NOTEBOOK_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, ConfigError, Mm4Error
from ..core.names import stored
from ..queue import active, intake
from ..queue.entries import Queue
from ..queue.schema import Entry
from ..remote.ssh import Unreachable
from ..results.records import as_trigger, read_record
from ..results.store import History
from ..run.pipeline import RunRequest, resume, run_notebook

BACKOFF_S = (2, 5, 10, 20, 30)  # a Mini away is asked again at most every 30 s: runs start soon after it is back


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reattach", action="store_true")
    parser.add_argument("entry", type=int)


def main(args: argparse.Namespace) -> int:
    place = config.locate()  # the queue needs only .mm4/: a broken mm4.toml must not strand the entry
    queue = Queue(place.state_dir)
    entry = _wait_for_claim(queue, args.entry)
    if entry is None:
        return EXIT_OK  # the daemon did not hand it over (removed meanwhile)
    try:
        cfg = config.load(place.root)
    except ConfigError as exc:
        if args.reattach and entry.run_id:
            # left claimed: the daemon holds while mm4.toml is broken, then picks the run up again
            print(f"mm4watch: run {entry.run_id} not picked up yet: {exc}", file=sys.stderr)
            return EXIT_USAGE
        after = queue.failed_to_start(entry.id, str(exc))
        print(f"mm4watch: entry {entry.id} not started: {after.last_error}", file=sys.stderr)
        return EXIT_USAGE
    if args.reattach:
        return _reattach(cfg, queue, entry)
    try:  # a row this version cannot read (an unknown trigger, a commit gone) is kept, with why
        content = entry.content
        if content is None and entry.commit_sha:
            from ..core.git import show

            content = show(cfg.root, entry.commit_sha, stored(cfg.root, entry.notebook))
        request = RunRequest(
            notebook=cfg.root / stored(cfg.root, entry.notebook),  # the key is NFC; the file may be stored NFD
            trigger=as_trigger(entry.trigger),
            parameters=entry.parameters,
            executor=entry.executor,
            content=content,
            commit_sha=entry.commit_sha,  # a commit run is that commit's notebook, clean
            triggers=tuple(entry.triggers),
            sweep=entry.sweep,
        )
    except (Mm4Error, ValueError, TypeError) as exc:
        queue.park(entry.id, f"this queue entry cannot run: {exc}")
        print(f"mm4watch: entry {entry.id} not started: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started: list[str] = []

    def created(run_id: str) -> None:
        started.append(run_id)
        queue.set_run(entry.id, run_id)

    try:
        record, run_dir = run_notebook(cfg, request, say=lambda line: print(line, file=sys.stderr), on_created=created)
    except Unreachable as exc:
        if not started:  # nothing ran: the entry waits for the machine, backing off
            delay = BACKOFF_S[min(entry.attempts, len(BACKOFF_S)) - 1]
            since = entry.detail.get("away_since") or time.time()
            queue.release(entry.id, delay_s=delay, error=f"{exc} (next try in {delay}s)", away_since=since)
            print(f"mm4watch: {exc}; entry {entry.id} waits, next try in {delay}s", file=sys.stderr)
            return EXIT_UNREACHABLE
        raise
    except Mm4Error as exc:
        if not started:  # it could not start and never will as it is (a bad notebook, a bad config)
            queue.reject(entry.id, str(exc))
        raise
    except Exception as exc:
        if not started:
            queue.failed_to_start(entry.id, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if started:
            # however it ended, its record says how; requests merged while it ran join the record
            intake.record_triggers(cfg, queue.done(entry.id))
    return EXIT_OK if record.status == "succeeded" else EXIT_NOTEBOOK_FAILED


def _wait_for_claim(queue: Queue, entry_id: int, wait_s: float = 10.0) -> Entry | None:
    """The daemon marks the entry as this process's right after starting it."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        entry = queue.get(entry_id)
        if entry.state == "claimed" and entry.pid == os.getpid():
            return entry
        time.sleep(0.01)
    return None


def _reattach(cfg: config.Config, queue: Queue, entry: Entry) -> int:
    """Finish a run whose process died, then requeue it once if it was cut off."""
    if entry.run_id is None:  # it never started: simply queued again
        queue.release(entry.id)
        return EXIT_UNREACHABLE
    history = History(cfg.results_dir, cfg.state_dir)
    record, run_dir = history.find(entry.run_id)
    with active.owning(cfg.state_dir, record.id):  # another process may be finishing it (orphans.py)
        record = read_record(run_dir)
        if not record.is_final:
            resume(cfg, run_dir, record)
    record = read_record(run_dir)
    if record.status == "interrupted" and cfg.daemon.requeue_interrupted and entry.requeued == 0:
        queue.release(entry.id, requeue=True, error=f"run {record.id} was interrupted by a crash; queued again once")
        return EXIT_UNREACHABLE
    intake.record_triggers(cfg, queue.done(entry.id))
    return EXIT_OK if record.status == "succeeded" else EXIT_NOTEBOOK_FAILED
