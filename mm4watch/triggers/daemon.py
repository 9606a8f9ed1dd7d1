"""The watch daemon: one per project, it watches saves and drains the queue.

It wires the parts and runs the loop: the watcher and what a save decides (``saves``), the
commits the git hooks noted (``commits``), the run processes and capacity (``schedule.runs``),
what listens for a run's end (``schedule.after``), and mm4.toml read again when it changes, with
everything that depends on it (watched folders, debounce, executors, capacity). Runs live in
processes of their own, so the daemon can crash, be killed or restarted without stopping one.
State lives in ``.mm4/``: ``daemon.lock`` (held while running), ``daemon.json`` (pid, start),
``daemon.log`` (rotated).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..core import proc
from ..core.config import CONFIG_NAME, Config
from ..core.config import load as load_config
from ..core.errors import ConfigError, Mm4Error
from ..core.fsutil import atomic_write_json
from ..core.git import git_dir
from ..queue import active
from ..queue.active import INFO_NAME, process_started, read_info
from ..queue.entries import Queue
from ..schedule.after import Notifier, ReportPage
from ..schedule.runs import Runs
from .saves import Saves

if TYPE_CHECKING:
    from .watcher import Watcher

LOG_NAME = "daemon.log"
RECONCILE_EVERY_S = 2.0

log = logging.getLogger("mm4watch.triggers.daemon")


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.state_dir = config.state_dir
        self.queue = Queue(self.state_dir)
        self.wake = threading.Event()
        self.stopping = False
        self.stop_now = False
        self._lock_file: TextIO | None = None
        self.held: str | None = None  # why new runs wait: mm4.toml does not load (the last good one is kept)
        self._config_stamp: tuple[int, int] | None = self._stamp()
        self._info: dict[str, object] = {}
        self._said_stopping = False
        self.notifier = Notifier(config)
        self.report = ReportPage(config)
        self.runs = Runs(config, self.queue, self.wake)
        self.runs.ended += [self.notifier.run_ended, self.report.run_ended]
        self.saves = Saves(config, self.queue, self.wake, self.notifier.tell)
        self.watcher: Watcher | None = None
        self._watching: tuple[tuple[Path, ...], tuple[Path, ...], float] | None = None  # what it watches

    # -- lifecycle ------------------------------------------------------------

    def acquire(self) -> None:
        self._lock_file = active.take_daemon_lock(self.state_dir)
        if self._lock_file is None:
            info = read_info(self.state_dir) or {}
            raise Mm4Error(
                f"a daemon already runs for {self.config.root} (pid {info.get('pid')}); `mm4watch status`"
            ) from None
        self._info = {
            "pid": os.getpid(),
            "pid_started": process_started(os.getpid()),
            "started_at": time.time(),
            "root": str(self.config.root),
        }
        atomic_write_json(self.state_dir / INFO_NAME, self._info)

    def _setup_logging(self) -> None:
        handler = logging.handlers.RotatingFileHandler(self.state_dir / LOG_NAME, maxBytes=1 << 20, backupCount=3)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root = logging.getLogger("mm4watch")
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)

    def _signals(self) -> None:
        def graceful(signum: int, frame: object) -> None:
            self.stopping = True
            self._info["stopping"] = True  # `status` says so while the current run finishes
            self.wake.set()

        def now(signum: int, frame: object) -> None:
            self.stopping = self.stop_now = True
            self.wake.set()

        signal.signal(signal.SIGTERM, graceful)
        signal.signal(signal.SIGINT, graceful)
        signal.signal(signal.SIGUSR1, now)
        signal.signal(signal.SIGUSR2, lambda signum, frame: self.wake.set())  # a new entry: `active.nudge`

    def serve(self) -> int:
        self.acquire()
        self._setup_logging()
        self._signals()
        log.info("daemon started (pid %s) for %s", os.getpid(), self.config.root)
        self.runs.reconcile(reattach=True)
        self.runs.adopt()
        self.drain_commits()
        self.saves.git_dir = git_dir(self.config.root)
        self.watch()
        self.saves.note_head()
        self._info["watching"] = True  # `mm4watch start` returns now: every save from here on is seen
        self._write_info()
        try:
            self._loop()
        finally:
            try:
                self.report.refresh_if_due(now=True)  # a run ended just before the stop: the page shows it
            except OSError:
                log.exception("could not start the report's refresh")
            if self.watcher is not None:
                self.watcher.stop()
            (self.state_dir / INFO_NAME).unlink(missing_ok=True)
            log.info("daemon stopped")
        return 0

    def _loop(self) -> None:
        last_look = time.monotonic()
        while True:
            self.runs.reap()
            self.report.refresh_if_due()
            self.saves.report_git_skips()
            if time.monotonic() - last_look >= RECONCILE_EVERY_S:
                self._look_around()
                last_look = time.monotonic()
            if self.stopping:
                if not self._said_stopping:
                    self._said_stopping = True
                    self._write_info()
                if self.stop_now:
                    self.runs.cancel_all()
                if not self.runs.running:
                    return
            elif not self.held:
                self.runs.dispatch()
            # runs going: look at them often (a run's end wakes it at once); idle: sleep until a
            # save or a second passes
            wait = 0.25 if self.runs.running else 1.0
            due = self.report.due_in()
            if due is not None:
                wait = max(0.05, min(wait, due))
            self.wake.wait(wait)
            self.wake.clear()

    def _look_around(self) -> None:
        """Every couple of seconds: HEAD, mm4.toml, the folders to watch, runs whose process is gone,
        commits the hooks noted."""
        self.saves.note_head()
        self.check_config()
        if self._watching != self._watch_spec():  # mm4.toml moved them, or a folder appeared
            self.watch()
        self.runs.reconcile(reattach=not self.stopping and not self.held)
        self.runs.adopt()
        self.drain_commits()

    # -- mm4.toml changing under a running daemon ---------------------------------

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = (self.config.root / CONFIG_NAME).stat()
            return st.st_mtime_ns, st.st_size
        except OSError:
            return None

    def check_config(self) -> None:
        """Reload mm4.toml when it changed, and with it every part that reads it (the watcher is
        rebuilt by the caller when its folders or debounce moved; capacity is asked again of new
        executor settings). Broken: keep the last good config and hold new runs, saying why (log,
        status, notification). Fixed: resume by itself."""
        stamp = self._stamp()
        if stamp == self._config_stamp:
            return
        self._config_stamp = stamp
        try:
            fresh = load_config(self.config.root)
        except ConfigError as exc:
            if self.held != str(exc):
                self.held = str(exc)
                log.error("mm4.toml does not load; new runs wait until it is fixed: %s", exc)
                self._write_info()
                self.notifier.tell("mm4watch: mm4.toml is broken", f"runs wait until it is fixed: {exc}")
            return
        if self.held:
            log.info("mm4.toml loads again: runs resume")
        else:
            log.info("mm4.toml changed: reloaded")
        self.held = None
        self.config = self.runs.config = self.saves.config = self.report.config = self.notifier.config = fresh
        self._write_info()
        self.wake.set()

    def _write_info(self) -> None:
        self._info["held"] = self.held
        atomic_write_json(self.state_dir / INFO_NAME, self._info)

    # -- what asks for runs -------------------------------------------------------

    def _watch_spec(self) -> tuple[tuple[Path, ...], tuple[Path, ...], float]:
        """What the watcher watches, by the config now: the notebook folders that exist, the folders
        left out, the debounce."""
        folders = tuple(f for f in (self.config.root / n for n in self.config.project.notebooks) if f.is_dir())
        return folders, tuple(self.config.unwatched), self.config.daemon.debounce_s

    def watch(self) -> None:
        """Watch what the config says (again, after mm4.toml changed it or a notebook folder appeared),
        then remember what the folders hold. Watching starts before the scan (a save made during the
        scan is seen twice at worst, never missed); "watching" is said after it, when every save from
        then on is a change to what was remembered."""
        from .watcher import Watcher

        spec = self._watch_spec()
        if self.watcher is not None:
            self.watcher.stop()
        self.watcher = Watcher(spec[0], spec[1], spec[2], self.saves.saved, git_dir=self.saves.git_dir)
        self.watcher.start()
        self._watching = spec
        self.saves.scan()
        log.info("watching %s (debounce %.1fs)", ", ".join(str(f) for f in spec[0]) or "no folder yet", spec[2])

    def drain_commits(self) -> None:
        """Commits the git hooks noted and no drain has queued yet (e.g. after a reboot)."""
        from .commits import drain

        try:
            queued = drain(self.config)
            for what in queued:  # merged requests say so: "(the same run as entry 12 ...)"
                log.info("commit: %s", what)
            if queued:
                self.wake.set()
        except Exception:
            log.exception("while queueing noted commits")


def spawn_detached(config: Config) -> subprocess.Popen[bytes]:
    """Start ``mm4watch start --foreground`` in the background, detached from the terminal."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    with open(config.state_dir / LOG_NAME, "ab") as out:
        return proc.detach(proc.command("start", "--foreground"), cwd=config.root, stdout=out)
