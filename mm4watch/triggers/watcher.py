"""Watching notebook folders: which writes count, and when a save is over.

Jupyter rewrites a notebook in place (with a ``.~name`` backup beside it and
checkpoints in ``.ipynb_checkpoints/``), autosaves every 120 s, every second
with collaboration on; macOS coalesces file events. So a path counts as saved
once it has been quiet for the debounce delay; what is queued then is decided
by the daemon from the notebook's code (see ``tags.code_hash``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePath
from typing import Any

IGNORED_DIRS = frozenset({".ipynb_checkpoints", ".git", ".mm4", "__pycache__", ".venv", "node_modules"})


def counts(path: str | PurePath, excluded: Iterable[Path] = ()) -> bool:
    """Whether a write to ``path`` may be a notebook save worth looking at (pure)."""
    p = PurePath(path)
    if p.suffix != ".ipynb" or p.name.startswith((".", "~")) or p.name.endswith("-checkpoint.ipynb"):
        return False
    if any(part in IGNORED_DIRS for part in p.parts):
        return False
    return not any(p.is_relative_to(folder) for folder in excluded)


class GitWindows:
    """When git was writing the work tree (pure, thread-safe).

    Every git command that writes files of the work tree (checkout, switch, reset,
    merge, pull, rebase, cherry-pick, revert, stash, restore) holds ``index.lock``
    in the git folder while it does; the watcher sees the lock appear and go. A
    write to a notebook inside such a window (plus ``SLACK_S`` for events that
    arrive late) may be git's; the daemon then checks the bytes (see
    ``Daemon.saved``), since `git add` or `git commit` of another file takes the
    lock too."""

    SLACK_S = 0.5  # after a window: events about git's writes may arrive a little late
    LEAD_S = 0.05  # before it: a write seen before git took its lock is not git's
    KEEP_S = 120.0
    STALE_S = 300.0  # a lock left behind by a git that crashed stops counting

    def __init__(self) -> None:
        self._open: dict[str, float] = {}
        self._closed: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def opened(self, name: str, now: float) -> None:
        with self._lock:
            self._open.setdefault(name, now)

    def closed(self, name: str, now: float) -> None:
        with self._lock:
            start = self._open.pop(name, now)
            self._closed = [w for w in self._closed if now - w[1] < self.KEEP_S] + [(start, now)]

    def covers(self, first: float, last: float) -> bool:
        """Whether any write between ``first`` and ``last`` fell in a window of git's."""
        with self._lock:
            if any(last - self.STALE_S <= start <= last + self.LEAD_S for start in self._open.values()):
                return True
            return any(start - self.LEAD_S <= last and first <= end + self.SLACK_S for start, end in self._closed)


class Debouncer:
    """Paths written recently, and which have been quiet for ``delay_s`` (pure, thread-safe)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self.kick = threading.Event()  # set on every touch: an idle watcher sleeps until then

    def touch(self, path: str, now: float) -> None:
        with self._lock:
            self._last[path] = now
        self.kick.set()

    def due(self, now: float) -> list[tuple[str, float]]:
        """Paths quiet for ``delay_s``, with the time of their last write."""
        with self._lock:
            ready = [p for p, t in self._last.items() if now - t >= self.delay_s]
            return sorted((p, self._last.pop(p)) for p in ready)

    def pending(self) -> int:
        with self._lock:
            return len(self._last)


class Watcher:
    """A watchdog observer on the notebook folders, feeding a debouncer."""

    TICK_S = 0.05

    def __init__(
        self,
        folders: Iterable[Path],
        excluded: Iterable[Path],
        delay_s: float,
        on_saved: Callable[[Path, bool], None],
        git_dir: Path | None = None,
    ) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        self.folders = [f for f in folders if f.is_dir()]
        self.excluded = [Path(e) for e in excluded]
        self.debouncer = Debouncer(delay_s)
        self.on_saved = on_saved
        self.git = GitWindows()
        self._stop = threading.Event()
        debouncer, excluded_dirs, windows = self.debouncer, self.excluded, self.git

        class GitHandler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                src = event.src_path.decode() if isinstance(event.src_path, bytes) else event.src_path
                name = Path(src).name
                if not name.endswith(".lock"):
                    return
                if event.event_type == "created":
                    windows.opened(name, time.monotonic())
                elif event.event_type in ("deleted", "moved"):  # git renames index.lock over index
                    windows.closed(name, time.monotonic())

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.is_directory or event.event_type in ("opened", "closed_no_write", "deleted"):
                    return
                for raw in (event.src_path, getattr(event, "dest_path", "")):
                    path = raw.decode() if isinstance(raw, bytes) else raw
                    if path and counts(path, excluded_dirs):
                        debouncer.touch(path, time.monotonic())

        self.observer = Observer()
        if git_dir is not None and git_dir.is_dir():
            self.observer.schedule(GitHandler(), str(git_dir), recursive=False)
        for folder in self.folders:
            self.observer.schedule(Handler(), str(folder), recursive=True)
        self.thread = threading.Thread(target=self._loop, name="mm4-debounce", daemon=True)

    def start(self) -> None:
        self.observer.start()
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.debouncer.kick.set()
        self.observer.stop()
        self.observer.join(timeout=5)
        self.thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.debouncer.pending():
                time.sleep(self.TICK_S)
            else:
                self.debouncer.kick.wait()  # nothing to time: sleep until a write
                self.debouncer.kick.clear()
                continue
            for path, last in self.debouncer.due(time.monotonic()):
                try:
                    # the last write decides: the user's edit made just after a checkout is the user's
                    self.on_saved(Path(path), self.git.covers(last, last))
                except Exception:  # one bad notebook never stops the watcher
                    import logging

                    logging.getLogger("mm4watch.triggers.watcher").exception("while looking at %s", path)
