"""The watch daemon: one per project, it watches saves and drains the queue.

Each run goes to a process of its own (``mm4watch _exec ENTRY``, in its own
session), so the daemon can crash, be killed or restarted without stopping a
run; on start it adopts runs still going and reconciles those whose process
died (re-attaching to their container, or recording them interrupted and
queueing them again once). State lives in ``.mm4/``: ``daemon.lock`` (held
while running), ``daemon.json`` (pid, start), ``daemon.log`` (rotated).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..core import proc
from ..core.config import CONFIG_NAME, Config, ExecutorConfig
from ..core.config import load as load_config
from ..core.errors import ConfigError, Mm4Error, NotebookError
from ..core.fsutil import atomic_write_json
from ..core.git import blob_sha, git_dir, head_sha, known_blobs, last_operation
from ..core.names import notebook_key
from ..core.tags import code_hash, near_misses, read_tag
from ..queue import active, decisions, intake, notify
from ..queue.active import INFO_NAME, alive, process_started, read_info
from ..queue.entries import Entry, Queue, QueueFull
from ..results.records import read_record

if TYPE_CHECKING:
    from .watcher import Watcher

LOG_NAME = "daemon.log"
EXEC_LOG_NAME = "exec.log"
REPORT_LOG_NAME = "report.log"
RECONCILE_EVERY_S = 2.0
REPORT_AFTER_S = 2.0  # the report is refreshed this long after the last run ended (runs ending together: once)
REPORT_WAIT_MAX_S = 20.0  # ... and no later than this after the first run it has not shown

log = logging.getLogger("mm4watch.triggers.daemon")


@dataclass
class _Running:
    entry_id: int
    executor: str
    pid: int
    started: float  # the process's create time, so a reused pid is not mistaken for it
    popen: subprocess.Popen[bytes] | None  # None: adopted from an earlier daemon


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.state_dir = config.state_dir
        self.queue = Queue(self.state_dir)
        self.running: dict[int, _Running] = {}
        self._pool_sizes: dict[str, tuple[int, float, ExecutorConfig]] = {}
        self._asking: set[str] = set()  # executors whose capacity is being asked again, in the background
        self._sizes_lock = threading.Lock()  # both, shared with those background questions
        self.wake = threading.Event()
        self.stopping = False
        self.stop_now = False
        self._cancel_asked: set[str] = set()  # runs already asked to stop (stop --now)
        self._lock_file: TextIO | None = None
        self.held: str | None = None  # why new runs wait: mm4.toml does not load (the last good one is kept)
        self._config_stamp: tuple[int, int] | None = self._stamp()
        self._info: dict[str, object] = {}
        self.git_dir: Path | None = None
        self._git_blobs: dict[str, set[str]] | None = None
        self._first_start = False
        self._report_due: tuple[float, float] | None = None  # (refresh at, first run not shown ended at)
        self._said_stopping = False
        self._head: str | None = None
        self._skips: list[tuple[float, str, str]] = []  # (when, operation, notebook): logged together
        self._skips_lock = threading.Lock()
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

    # -- mm4.toml changing under a running daemon ---------------------------------

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = (self.config.root / CONFIG_NAME).stat()
            return st.st_mtime_ns, st.st_size
        except OSError:
            return None

    def check_config(self) -> None:
        """Reload mm4.toml when it changed. Broken: keep the last good config and hold new
        runs, saying why (log, status, notification). Fixed: resume by itself."""
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
                self._tell("mm4watch: mm4.toml is broken", f"runs wait until it is fixed: {exc}")
            return
        if self.held:
            log.info("mm4.toml loads again: runs resume")
        else:
            log.info("mm4.toml changed: reloaded")
        self.held = None
        self.config = fresh
        self._write_info()
        self.wake.set()

    def _write_info(self) -> None:
        self._info["held"] = self.held
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
        self.reconcile()
        self.adopt()
        self.drain_commits()
        self.git_dir = git_dir(self.config.root)
        # watching starts before the scan: a save made during the scan is seen twice at worst, never missed
        self.watch()
        self.scan()
        self.note_head()
        self._info["watching"] = True  # `mm4watch start` returns now: every save from here on is seen
        self._write_info()
        last_reconcile = time.monotonic()
        try:
            while True:
                self.reap()
                self._report_if_due()
                self.report_git_skips()
                if time.monotonic() - last_reconcile >= RECONCILE_EVERY_S:
                    self.note_head()
                    self.check_config()
                    if self._watching != self._watch_spec():  # mm4.toml moved them, or a folder appeared
                        self.watch()
                        self.scan()  # what the new folders hold is remembered, as at start
                    self.reconcile()
                    self.adopt()
                    self.drain_commits()
                    last_reconcile = time.monotonic()
                if self.stopping:
                    if not self._said_stopping:
                        self._said_stopping = True
                        self._write_info()
                    if self.stop_now:
                        self._cancel_all()
                    if not self.running:
                        break
                elif not self.held:
                    self.dispatch()
                # runs going: look at them often (a run's end wakes it at once); idle: sleep until a
                # save or a second passes
                wait = 0.25 if self.running else 1.0
                if self._report_due is not None:
                    wait = max(0.05, min(wait, self._report_due[0] - time.monotonic()))
                self.wake.wait(wait)
                self.wake.clear()
        finally:
            try:
                self._report_if_due(now=True)  # a run ended just before the stop: the page shows it
            except OSError:
                log.exception("could not start the report's refresh")
            if self.watcher is not None:
                self.watcher.stop()
            (self.state_dir / INFO_NAME).unlink(missing_ok=True)
            log.info("daemon stopped")
        return 0

    def _watch_spec(self) -> tuple[tuple[Path, ...], tuple[Path, ...], float]:
        """What the watcher watches, by the config now: the notebook folders that exist, the folders
        left out, the debounce."""
        folders = tuple(f for f in (self.config.root / n for n in self.config.project.notebooks) if f.is_dir())
        return folders, tuple(self.config.unwatched), self.config.daemon.debounce_s

    def watch(self) -> None:
        """Watch what the config says (again, after mm4.toml changed it or a notebook folder appeared)."""
        from .watcher import Watcher

        spec = self._watch_spec()
        if self.watcher is not None:
            self.watcher.stop()
        self.watcher = Watcher(spec[0], spec[1], spec[2], self.saved, git_dir=self.git_dir)
        self.watcher.start()
        self._watching = spec
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

    # -- saves ------------------------------------------------------------------

    def scan(self) -> None:
        """At start: remember notebooks first seen; queue tagged ones changed while the daemon was away."""
        from ..core.git import known_blobs
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
        """A notebook was written: a save by the user queues a run; a write by git does not. What was
        decided is recorded as data (``decisions``), whichever way it went."""
        rel = notebook_key(self.config.root, path.relative_to(self.config.root).as_posix())  # as git names it
        decision, facts = self._decide(path, rel, by_git, first_look)
        decisions.record(self.state_dir, rel, decision, **facts)

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
        try:
            executor = self.config.executor(None, tag=tag.executor).name
            added = intake.request(self.config, rel, "save", content=content, executor=executor, queue=self.queue)
        except (ConfigError, QueueFull) as exc:
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
                    active.request_cancel(self.state_dir, entry.run_id)
        self.wake.set()
        return "queued", {"entry": added.id}

    def _refused(self, rel: str, reason: str) -> None:
        """A save that runs nothing though the user may expect it to: said in the log, `status`, a notification."""
        log.warning("not queued: %s", reason)
        self.queue.note_refused(rel, reason)
        self._tell(f"mm4watch: {Path(rel).name} not queued", reason)

    def _tell(self, title: str, body: str) -> None:
        """A notification about the daemon itself (not a run's end), when notifications are on."""
        if not self.config.daemon.notify:
            return
        try:
            notify.say(self.config, title, body[:300])
        except Exception:
            log.exception("notification failed")

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

    # -- runs -------------------------------------------------------------------

    def _busy(self) -> set[str]:
        counts: dict[str, int] = {}
        for run in self.running.values():
            counts[run.executor] = counts.get(run.executor, 0) + 1
        busy = set()
        for name, n in counts.items():
            cfg = self.config.executors.get(name)
            if n >= (self._limit(cfg) if cfg else 1):
                busy.add(name)
        return busy

    def _limit(self, cfg: ExecutorConfig) -> int:
        """Runs at once on an executor, as it says (``capacity()``: a pool asks its nodes). Asked once, then
        again each minute in the background: dispatch waits on a pool's answer only the first time."""
        with self._sizes_lock:
            cached = self._pool_sizes.get(cfg.name)
        if cached is None or cached[2] is not cfg:
            cached = (self._capacity(cfg), time.monotonic(), cfg)
            with self._sizes_lock:
                self._pool_sizes[cfg.name] = cached
            return cached[0]
        with self._sizes_lock:
            ask = time.monotonic() - cached[1] > 60 and cfg.name not in self._asking
            if ask:
                self._asking.add(cfg.name)
        if ask:

            def again() -> None:
                try:
                    size = self._capacity(cfg)
                    with self._sizes_lock:  # the main loop may have put a newer config's answer there
                        if self._pool_sizes.get(cfg.name, (0, 0.0, None))[2] is cfg:
                            self._pool_sizes[cfg.name] = (size, time.monotonic(), cfg)
                finally:
                    with self._sizes_lock:
                        self._asking.discard(cfg.name)
                    self.wake.set()  # the answer may let another run start

            threading.Thread(target=again, name=f"mm4-capacity-{cfg.name}", daemon=True).start()
        return cached[0]

    def _capacity(self, cfg: ExecutorConfig) -> int:
        from .. import executors

        try:
            return max(1, int(executors.get(cfg, self.config).capacity()))
        except Exception as exc:  # a plug-in's own failure never stops the daemon
            log.warning("executor %s cannot say how many runs it takes (%s): one at a time", cfg.name, exc)
            return 1

    def dispatch(self) -> None:
        while True:
            entry = self.queue.next_ready(self._busy())
            if entry is None:
                return
            if not self._spawn(entry, []):
                return

    def _spawn(self, entry: Entry, extra: list[str]) -> bool:
        executor = entry.executor or self.config.run.executor
        with open(self.state_dir / EXEC_LOG_NAME, "ab") as out:
            # a session of its own: a run outlives the daemon
            popen = proc.detach(
                [sys.executable, "-m", "mm4watch", "_exec", *extra, str(entry.id)], cwd=self.config.root, stdout=out
            )
        started = process_started(popen.pid) or 0.0
        claimed = (
            self.queue.reclaim(entry.id, popen.pid, started)
            if extra
            else self.queue.claim(entry.id, popen.pid, started)
        )
        if not claimed:
            popen.kill()
            popen.wait()
            return False
        self.running[entry.id] = _Running(entry.id, executor, popen.pid, started, popen)
        threading.Thread(target=self._woken_at_end, args=(popen,), name=f"mm4-run-{entry.id}", daemon=True).start()
        log.info(
            "started entry %s (%s) in process %s%s",
            entry.id,
            entry.notebook,
            popen.pid,
            " to re-attach" if extra else "",
        )
        return True

    def _woken_at_end(self, popen: subprocess.Popen[bytes]) -> None:
        """The loop woken as soon as a run's process ends: the next run starts then, not at the next look."""
        popen.wait()
        self.wake.set()

    def reap(self) -> None:
        for entry_id, run in list(self.running.items()):
            if run.popen is not None:
                code = run.popen.poll()
                if code is None:
                    continue
            elif alive(run.pid, run.started):
                continue
            else:
                code = None
            del self.running[entry_id]
            entry = self.queue.get(entry_id)
            log.info("entry %s ended (exit %s, now %s)", entry_id, code, entry.state)
            if entry.run_id and entry.state == "done":
                self._notify(entry)
                self._report_soon()
            if entry.state == "queued":
                self.wake.set()

    def adopt(self) -> None:
        """Runs whose own process died outside the queue (a foreground `mm4watch run`): finished."""
        from ..queue import orphans

        try:
            for run_id in orphans.adopt(self.config):
                log.info("run %s lost its process; picking it up", run_id)
        except Exception:
            log.exception("while looking for runs whose process died")

    def reconcile(self) -> None:
        """Claimed entries whose process is gone: back to the queue, or re-attach."""
        for entry in self.queue.entries(("claimed",)):
            if entry.id in self.running:
                continue
            if alive(entry.pid, entry.pid_started):
                # a run from before this daemon started, still going: watch it end
                self.running[entry.id] = _Running(
                    entry.id, entry.executor or "", entry.pid or 0, entry.pid_started or 0.0, None
                )
                log.info("adopted entry %s (process %s)", entry.id, entry.pid)
                continue
            if entry.run_id is None:
                after = self.queue.failed_to_start(
                    entry.id, f"its process (pid {entry.pid}) ended before the run started; see .mm4/{EXEC_LOG_NAME}"
                )
                log.info("entry %s: its process died before the run started; now %s", entry.id, after.state)
                continue
            try:
                record = read_record(self.config.results_dir / entry.run_id)
            except (OSError, ValueError):
                record = None
            if record is not None and record.is_final:
                self.queue.done(entry.id)
                continue
            if not self.stopping and not self.held:
                log.info("entry %s: run %s lost its process; picking it up", entry.id, entry.run_id)
                self._spawn(entry, ["--reattach"])

    def _cancel_all(self) -> None:
        """Ask each running run to stop, once: a second signal would cut short the stop it is making
        (its record finished, its results home)."""
        for run in self.running.values():
            entry = self.queue.get(run.entry_id)
            if entry.run_id and entry.run_id not in self._cancel_asked:
                if active.request_cancel(self.state_dir, entry.run_id) is not None:
                    self._cancel_asked.add(entry.run_id)

    def _report_soon(self) -> None:
        """A run ended: the report shows it ``REPORT_AFTER_S`` later, with any run that ends meanwhile
        (one nbconvert process for both, out of the way of the next runs' start)."""
        now = time.monotonic()
        first = self._report_due[1] if self._report_due else now
        self._report_due = (min(now + REPORT_AFTER_S, first + REPORT_WAIT_MAX_S), first)

    def _report_if_due(self, now: bool = False) -> None:
        if self._report_due is not None and (now or time.monotonic() >= self._report_due[0]):
            self._report_due = None
            self._refresh_report()

    def _refresh_report(self) -> None:
        """results/index.html anew, in a process of its own at a low priority (nbconvert stays out of
        the daemon, and out of the way of the runs going on)."""
        if not self.config.results.report:
            return
        with open(self.state_dir / REPORT_LOG_NAME, "ab") as out:
            proc.detach(
                [sys.executable, "-m", "mm4watch", "report", "--quiet", "--background"],
                cwd=self.config.root,
                stdout=out,
            )

    def _notify(self, entry: Entry) -> None:
        if not self.config.daemon.notify or not entry.run_id:
            return
        try:
            record = read_record(self.config.results_dir / entry.run_id)
            notify.send(self.config, record, self.config.results_dir / entry.run_id)
        except Exception:
            log.exception("notification failed")


def spawn_detached(config: Config) -> subprocess.Popen[bytes]:
    """Start ``mm4watch start --foreground`` in the background, detached from the terminal."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    with open(config.state_dir / LOG_NAME, "ab") as out:
        return proc.detach([sys.executable, "-m", "mm4watch", "start", "--foreground"], cwd=config.root, stdout=out)
