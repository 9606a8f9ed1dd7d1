"""The processes runs live in: started as the queue and capacity allow, reaped when they end,
adopted or re-attached when the daemon restarts under them.

Each run goes to a process of its own (``mm4watch _exec ENTRY``, in its own session), so the
daemon can crash, be killed or restarted without stopping a run. What listens for a run's end
(``ended``: the report page, notifications) is told with the entry once its run is done."""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..core import proc
from ..core.config import Config
from ..queue import active
from ..queue.active import alive, process_started
from ..queue.entries import Queue
from ..queue.schema import Entry
from ..results.records import read_record
from .capacity import Capacity

EXEC_LOG_NAME = "exec.log"

log = logging.getLogger("mm4watch.schedule.runs")


@dataclass
class Running:
    entry_id: int
    executor: str
    pid: int
    started: float  # the process's create time, so a reused pid is not mistaken for it
    popen: subprocess.Popen[bytes] | None  # None: adopted from an earlier daemon


class Runs:
    def __init__(self, config: Config, queue: Queue, wake: threading.Event) -> None:
        self.config = config  # the daemon puts a reloaded mm4.toml's here
        self.queue = queue
        self.wake = wake
        self.running: dict[int, Running] = {}
        self.capacity = Capacity(wake.set)
        self.ended: list[Callable[[Entry], None]] = []  # told of each run that ended, with its entry
        self._cancel_asked: set[str] = set()  # runs already asked to stop (stop --now)

    def dispatch(self) -> None:
        """Start what the queue holds, as many at once as each executor takes."""
        while True:
            busy = self.capacity.busy(self.config, (run.executor for run in self.running.values()))
            entry = self.queue.next_ready(busy)
            if entry is None or not self._spawn(entry, []):
                return

    def _spawn(self, entry: Entry, extra: list[str]) -> bool:
        executor = entry.executor or self.config.run.executor
        with open(self.config.state_dir / EXEC_LOG_NAME, "ab") as out:
            # a session of its own: a run outlives the daemon
            popen = proc.detach(proc.command("_exec", *extra, str(entry.id)), cwd=self.config.root, stdout=out)
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
        self.running[entry.id] = Running(entry.id, executor, popen.pid, started, popen)
        # the loop is woken as soon as the process ends: the next run starts then, not at the next look
        threading.Thread(target=self._woken_at_end, args=(popen,), name=f"mm4-run-{entry.id}", daemon=True).start()
        again = " to re-attach" if extra else ""
        log.info("started entry %s (%s) in process %s%s", entry.id, entry.notebook, popen.pid, again)
        return True

    def _woken_at_end(self, popen: subprocess.Popen[bytes]) -> None:
        popen.wait()
        self.wake.set()

    def reap(self) -> None:
        """Runs whose process ended: out of the running set; a finished run told to ``ended``."""
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
                for listener in self.ended:
                    try:
                        listener(entry)
                    except Exception:
                        log.exception("after entry %s ended", entry_id)
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

    def reconcile(self, reattach: bool) -> None:
        """Claimed entries whose process is not ours: watched if still going; else back to the
        queue, or (``reattach``) a process that picks the run up where it is."""
        for entry in self.queue.entries(("claimed",)):
            if entry.id in self.running:
                continue
            if alive(entry.pid, entry.pid_started):
                # a run from before this daemon started, still going: watch it end
                self.running[entry.id] = Running(
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
            if reattach:
                log.info("entry %s: run %s lost its process; picking it up", entry.id, entry.run_id)
                self._spawn(entry, ["--reattach"])

    def cancel_all(self) -> None:
        """Ask each running run to stop, once: a second signal would cut short the stop it is making
        (its record finished, its results home)."""
        for run in self.running.values():
            entry = self.queue.get(run.entry_id)
            if entry.run_id and entry.run_id not in self._cancel_asked:
                if active.request_cancel(self.config.state_dir, entry.run_id) is not None:
                    self._cancel_asked.add(entry.run_id)
