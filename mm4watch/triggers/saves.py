"""A notebook written on disk: a save by the user queues a run; a write by git does not.

What was decided is recorded as data (``queue.decisions``), whichever way it went; a save that
runs nothing though the user may expect it to is said (the log, ``status``, a notification)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.config import Config
from ..core.errors import ConfigError, NotebookError, UsageError
from ..core.git import blob_sha, head_sha, known_blobs, last_operation
from ..core.names import notebook_key
from ..core.tags import code_hash, near_misses, read_tag
from ..queue import active, decisions, intake
from ..queue.entries import Queue, QueueFull
from . import params

log = logging.getLogger("mm4watch.triggers.saves")


class Saves:
    def __init__(self, config: Config, queue: Queue, wake: threading.Event, tell: Callable[[str, str], None]) -> None:
        self.config = config  # the daemon puts a reloaded mm4.toml's here
        self.queue = queue
        self.wake = wake  # set when a run was queued
        self.tell = tell  # a notification about a save not queued
        self.git_dir: Path | None = None
        self._git_blobs: dict[str, set[str]] | None = None
        self._first_start = False
        self._head: str | None = None
        self._skips: list[tuple[float, str, str]] = []  # (when, operation, notebook): logged together
        self._skips_lock = threading.Lock()

    def scan(self) -> None:
        """At start (and for a folder newly watched): remember notebooks first seen; queue tagged
        ones changed while the daemon was away."""
        from .watcher import counts

        head = head_sha(self.git_dir) if self.git_dir else None
        moved = head is not None and head != self.queue.meta("head")
        self._git_blobs = known_blobs(self.config.root, list(self.config.project.notebooks)) if moved else None
        self._first_start = not self.queue.has_seen()
        for folder in self.config.project.notebooks:
            base = self.config.root / folder
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*.ipynb")):
                if counts(path, self.config.unwatched):
                    self.saved(path, first_look=True)
        self._git_blobs = None

    def saved(self, path: Path, by_git: bool = False, first_look: bool = False) -> None:
        """The watcher's callback: ``path`` was written (``by_git``: while git held its lock)."""
        rel = notebook_key(self.config.root, path.relative_to(self.config.root).as_posix())  # as git names it
        decision, facts = self._decide(path, rel, by_git, first_look)
        decisions.record(self.config.state_dir, rel, decision, **facts)

    def _decide(self, path: Path, rel: str, by_git: bool, first_look: bool) -> tuple[str, dict[str, Any]]:
        try:
            content = path.read_bytes()
            nb, tag = read_tag(content, rel)
        except FileNotFoundError:
            return "gone", {}  # deleted since
        except (NotebookError, OSError) as exc:
            self._refused(rel, str(exc))
            return "refused", {"why": str(exc)}
        digest = code_hash(nb)
        previous = self.queue.seen(rel)
        self.queue.see(rel, digest)
        if previous != digest and not first_look:
            for problem in near_misses(nb, rel):  # a tag typed wrong: the user thinks it runs
                self._refused(rel, problem)
        # at the very first start, notebooks are remembered, not run; later, one the daemon has
        # never seen was made while it was away: a save like any other
        if tag is None:
            return "untagged", {}
        if previous == digest:
            return "unchanged", {}
        if first_look and previous is None and self._first_start:
            return "remembered", {}
        if first_look and self._git_blobs is not None:
            # changed while the daemon was away, HEAD moved meanwhile, and the bytes are HEAD's:
            # a branch switch, a pull (or a commit, which the commit trigger runs), not an edit
            by_git = blob_sha(content) in self._git_blobs.get(rel, set())
        elif by_git:
            # written while git held its lock: git's write if the bytes are what git holds now
            # (HEAD or the index), or bytes asked for before that git put back (stash pop);
            # new bytes are a save the user made while git ran (`git add` of another file)
            by_git = blob_sha(content) in known_blobs(self.config.root, [rel]).get(
                rel, set()
            ) or self.queue.asked_before(rel, content)
        if by_git:
            return "git", {"operation": self._git_skipped(rel, first_look)}
        return self._queue(rel, content, tag.executor, tag.sweep)

    def _queue(self, rel: str, content: bytes, tagged: str | None, sweep: list[str]) -> tuple[str, dict[str, Any]]:
        try:
            executor = self.config.executor(None, tag=tagged).name
            if sweep:  # a sweep's runs: each a request of its own (a newer save replaces them while they wait)
                sweep_id, runs = intake.request_sweep(
                    self.config, rel, "save", params.grid(sweep), content=content, executor=executor, queue=self.queue
                )
                log.info("queued sweep %s of %s: %d runs (executor %s)", sweep_id, rel, len(runs), executor)
                self.wake.set()
                return "queued", {"sweep": sweep_id, "entries": [a.id for a in runs]}
            added = intake.request(self.config, rel, "save", content=content, executor=executor, queue=self.queue)
        except (ConfigError, QueueFull, UsageError) as exc:
            self._refused(rel, f"{rel}: {exc}")
            return "refused", {"why": str(exc)}
        if added.merged_into is not None:
            log.info("save of %s: %s", rel, intake.describe(added))
            return "merged", {"entry": added.merged_into.id}
        log.info("queued %s (entry %s, executor %s)", rel, added.id, executor)
        for old in added.superseded:
            log.info("entry %s (an older save of %s, not started) is replaced by entry %s", old, rel, added.id)
        if self.config.daemon.restart_running:
            for entry in self.queue.entries(("claimed",)):
                if entry.notebook == rel and entry.run_id:
                    log.info("cancelling %s: a newer save of %s came", entry.run_id, rel)
                    active.request_cancel(self.config.state_dir, entry.run_id)
        self.wake.set()
        return "queued", {"entry": added.id}

    def _refused(self, rel: str, reason: str) -> None:
        log.warning("not queued: %s", reason)
        self.queue.note_refused(rel, reason)
        self.tell(f"mm4watch: {Path(rel).name} not queued", reason)

    def note_head(self) -> None:
        """Remember HEAD: at the next start, notebooks changed while away to HEAD's bytes
        are git's writes only if HEAD moved meanwhile."""
        head = head_sha(self.git_dir) if self.git_dir else None
        if head is not None and head != self._head:
            self._head = head
            self.queue.set_meta("head", head)

    def _git_skipped(self, rel: str, while_away: bool) -> str:
        operation = (
            "while the daemon was stopped"
            if while_away
            else (last_operation(self.git_dir) if self.git_dir else "git operation")
        )
        self.queue.note_git(rel, operation)
        with self._skips_lock:
            self._skips.append((time.monotonic(), operation, rel))
        return operation

    def report_git_skips(self, quiet_s: float = 1.0) -> None:
        """One line per git operation: "3 notebooks changed by git checkout: not runs (a, b, c)"."""
        with self._skips_lock:
            if not self._skips or time.monotonic() - self._skips[-1][0] < quiet_s:
                return
            skips, self._skips = self._skips, []
        by_op: dict[str, list[str]] = {}
        for _, operation, rel in skips:
            by_op.setdefault(operation, []).append(rel)
        for operation, rels in by_op.items():
            names = sorted(set(rels))
            noun = "notebook" if len(names) == 1 else "notebooks"
            log.info("%d %s changed by git %s: not runs (%s)", len(names), noun, operation, ", ".join(names))
