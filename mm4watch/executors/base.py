"""The shape every executor shares, after papermill's ``Engine``.

``Executor.execute`` does every step that all executors share: the job spec
the runner reads, the wait with its deadline and periodic harvests, the stop
on timeout or ^C, bringing results home also after a failure, moving
``executed.ipynb`` into place, and mapping ``result.json`` and the exit status
to an ``Outcome``. An executor supplies only its transport:

    prepare(job, info) -> handle    build or sync what the run needs, make it ready to start
    start(handle, job)              start the runner (the far side of ``RUNNER``)
    poll(handle, job, wait_s)       its exit code once it ended (None while it runs)
    fetch(handle, job)              bring the run's output folder home into ``job.run_dir``
    stop(handle)                    TERM, then KILL after ``STOP_GRACE_S``
    release(handle)                 remove what the run left over there (container, folder)
    find(job) -> handle | None      a run whose mm4watch process died, to follow again

and what the commands around a run ask of it: ``doctor(report)`` (checks, step by step),
``gc(keep)`` (what it keeps over there, trimmed), ``capacity()`` (runs at once, for the daemon).
Its settings are ``config_class``, a frozen dataclass built on ``config.ExecutorConfig``; the
type is registered by an entry point (``core.plugins``), the built-in ones like any plug-in.
"""

from __future__ import annotations

import builtins
import dataclasses
import errno
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from ..core import checks
from ..core.config import Config, ConfigProblem, ExecutorConfig, setting
from ..core.durations import format_duration
from ..core.errors import Mm4Error
from ..results.records import ENVIRONMENT_NAME
from . import HOME_PHASE, Job, Outcome, away
from .far_side import RESULT_DIR
from .runlog import NO_SPACE, last_cell, log_line, log_tail

if TYPE_CHECKING:
    from ..remote.mirror import Pushed
    from ..remote.ssh import Target
    from .upkeep import Checkup

STOP_GRACE_S = 10.0  # TERM first: papermill saves what ran; KILL after this
POLL_MAX_S = 30.0

H = TypeVar("H")


@dataclass(frozen=True)
class RemoteConfig(ExecutorConfig):
    """What the executors that reach another machine over ssh share."""

    host: str | None = setting(checks.host)
    ssh_options: tuple[str, ...] = setting(checks.text_list, ())  # extra arguments for the system ssh client
    workdir: str | None = setting(checks.text)  # under the remote home: workspaces, the mirror of earlier results
    data: str | None = setting(checks.abs_path)  # the mirror of data/ on that machine
    sync_data: bool = setting(checks.boolean, False)  # rsync data/ to that mirror before each run

    def check(self) -> None:
        if self.sync_data and not self.data:
            raise ConfigProblem("sync_data", 'needs data = "/path/on/that/machine" to sync into')


@dataclass(frozen=True)
class LostNode:
    name: str  # for the record (``lost_nodes``)
    label: str  # for run.log: the name and what tells it apart ("mini (3f2a9c0d1e2b)")
    avoid: str  # what ``job.avoid`` holds for it: how ``prepare`` tells it (a node ID, a worker address)


class Executor(Generic[H]):
    """Base of every executor: subclasses write the transport (see the module docstring)."""

    type = "base"
    config_class: ClassVar[builtins.type[ExecutorConfig]] = ExecutorConfig
    died = "the runner ended without a result"  # how an end without result.json reads, per executor
    elsewhere: ClassVar[bool] = True  # runs on another machine: earlier results are sent there (mirror)
    tag_options: ClassVar[dict[str, str]] = {}  # options this type adds to the tag (its own: job.tag), with meaning
    helpers: ClassVar[dict[str, str]] = {}  # processes it runs beside the runs: name -> "module:function" (_helper)

    def __init__(self, settings: ExecutorConfig, config: Config, harvest_every_s: float | None = None) -> None:
        self.settings = settings
        self.config = config
        self.name = settings.name
        self.harvest_every_s = harvest_every_s or settings.harvest_every_s

    # -- what each executor writes -----------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type}

    def check(self) -> Any:
        """Raise ``ssh.Unreachable`` when the executor cannot take a run now. What it reached and
        is worth keeping (a connection, with ``close()``) goes to the run as ``job.reached``."""
        return None

    def prepare(self, job: Job, info: dict[str, Any]) -> H | Outcome:
        raise NotImplementedError

    def start(self, handle: H, job: Job) -> None:
        raise NotImplementedError

    def poll(self, handle: H, job: Job, wait_s: float) -> int | None:
        raise NotImplementedError

    def fetch(self, handle: H, job: Job) -> None:
        raise NotImplementedError

    def stop(self, handle: H) -> None:
        raise NotImplementedError

    def release(self, handle: H) -> None:
        """Remove what the run left on the far side."""

    def find(self, job: Job, info: dict[str, Any]) -> H | None:
        return None

    def died_detail(self, code: int | None) -> str:
        return self.died

    def close(self) -> None:
        """The run (or the re-attach) is over: let go of what the executor holds open."""

    # -- a pool that loses a machine under a run ---------------------------------------
    # An executor over a pool says when the machine a run was on was lost (``node_lost``, with the
    # run's handle; ``lost_node``, from the outcome) and how many times to run again elsewhere;
    # ``prepare`` keeps the run off the machines in ``job.avoid``.

    node_word = "machine"  # what the pool's machines are called: node, worker

    def node_lost(self, handle: H, outcome: Outcome) -> str:
        """Why the run's machine was lost under it, in words ("" when it was not)."""
        return ""

    def lost_node(self, outcome: Outcome) -> LostNode | None:
        """The machine a ``NodeLost`` outcome lost, to be avoided by the next attempt."""
        return None

    def retries_lost(self) -> int:
        """How many times a run whose machine was lost runs again on another."""
        return 0

    def another_for(self, job: Job) -> bool:
        """Whether a machine not in ``job.avoid`` could take the run."""
        return True

    def fits(self) -> str:
        """What a machine needs to take the run, in words ("has memory=2")."""
        return "can take it"

    # -- earlier results, for executors that run elsewhere --------------------------

    def send_earlier(self, job: Job, target: Target, base: str, where: str = "") -> Pushed | None:
        """The earlier results this run may load, present in the project's copy under ``base`` on
        ``target`` and pinned for the run (None when it sees none); said in run.log."""
        if job.earlier is None or job.earlier.mode == "none":
            return None
        from ..remote import mirror

        pushed = mirror.push(target, self.config, mirror.remote_dir(self.config, base), job.earlier, job.key)
        log_line(job, (f"{where}: " if where else "") + pushed.line())
        return pushed

    def let_go_earlier(self, pins: list[tuple[Target, str, str]]) -> None:
        """The run ended: its pinned earlier results may go when a copy needs room (target, folder, run key)."""
        from ..core.proc import CommandFailed
        from ..remote import mirror
        from ..remote.ssh import Unreachable

        for target, folder, key in pins:
            try:
                mirror.unpin(target, folder, key)
            except (Unreachable, CommandFailed):
                pass  # that machine went away: the pin expires by itself (mirror.PIN_MAX_AGE_MIN)

    # -- what the commands around a run ask ------------------------------------------

    def doctor(self, report: Checkup) -> None:
        """Check, step by step, that runs can start here; each FAIL with its fix."""
        report.warn("checks", f"the {self.type} executor has no checks of its own")

    def gc(self, keep: int | None) -> list[str]:
        """Remove what runs left over there beyond the newest ``keep``; what was done, line by line."""
        return [f"executor {self.name!r} ({self.type}) keeps nothing between runs; nothing to do"]

    def capacity(self) -> int:
        """How many runs the daemon starts at once here: ``concurrency``; a pool's 0, one per machine of
        it that can take a run (``places``), 1 when it cannot say."""
        if self.settings.concurrency:
            return self.settings.concurrency
        try:
            return max(1, self.places())
        except Mm4Error as exc:
            print(
                f"mm4watch: {self.name}: cannot count its {self.node_word}s ({exc}); one run at a time", file=sys.stderr
            )
            return 1
        finally:
            self.close()

    def places(self) -> int:
        """How many of a pool's machines can take a run now (``concurrency = 0``)."""
        return 1

    # -- the shared steps ------------------------------------------------------------

    def execute(self, job: Job) -> Outcome:
        """The run, start to end: one attempt; and where a pool lost the machine the run was on
        (``lost_node``), another on a machine not lost yet, up to ``retries_lost()`` times."""
        lost: list[str] = []
        try:
            while True:
                outcome = self._attempt(job)
                node = self.lost_node(outcome)
                if node is None or len(lost) >= self.retries_lost():
                    break
                lost.append(node.name)
                job = dataclasses.replace(job, avoid=(*job.avoid, node.avoid))
                if not self.another_for(job):
                    log_line(job, f"{node.name} was lost, and no other {self.node_word} {self.fits()}: not run again")
                    break
                log_line(
                    job,
                    f"{node.label} was lost: running again on another {self.node_word} "
                    f"(retry {len(lost)} of {self.retries_lost()})",
                )
                job.phase(f"running again on another {self.node_word}")
            if lost:
                outcome = dataclasses.replace(outcome, executor={**outcome.executor, "lost_nodes": lost})
            return outcome
        finally:
            while job.reached:  # what check() reached and no attempt took
                job.reached.pop().close()
            self.close()

    def _attempt(self, job: Job) -> Outcome:
        """Prepare, start and follow the run once."""
        from ..remote.ssh import Unreachable

        info = dict(self.describe())
        job.phase(f"preparing on {self.name}")
        try:
            prepared = self.prepare(job, info)
        except Unreachable as exc:  # the machine went away during the build or the sync
            if not self.rides_out_loss or self.answers():  # it answers: not gone (a slow step), said as it is
                raise
            return away.lost_preparing(self, job, exc, info)
        if isinstance(prepared, Outcome):  # it could not even start (a failed build): said why
            return prepared
        handle: H = prepared
        job.phase("starting the kernel")
        try:
            self.start(handle, job)
        except BaseException:
            self.release(handle)
            raise
        return self._follow(handle, job, info)

    def reattach(self, job: Job) -> Outcome | None:
        """Follow a run whose mm4watch process died to its end; None if it is gone."""
        info = {**self.describe(), "reattached": True}
        try:
            handle = self.find(job, info)
            return None if handle is None else self._follow(handle, job, info)
        finally:
            self.close()

    def _follow(self, handle: H, job: Job, info: dict[str, Any]) -> Outcome:
        from ..remote.ssh import Unreachable

        try:
            try:
                status, code = self._wait(handle, job)
            except KeyboardInterrupt:  # ^C or cancel: stop it, keep what it wrote
                self.stop(handle)
                job.phase(HOME_PHASE)
                self._harvest(handle, job)
                raise
            job.phase(HOME_PHASE)
            try:
                if status == "lost":
                    away.harvest_lost(self, handle, job)
                else:
                    try:
                        self._harvest(handle, job)
                    except Unreachable as exc:  # the machine went away while its results came home
                        if not self.rides_out_loss:
                            raise
                        if not away.home_after_loss(self, handle, job, exc):
                            status = "lost"
            except OSError as exc:
                if exc.errno != errno.ENOSPC or not self.elsewhere:
                    raise
                return self._no_room_here(handle, job, info)
        finally:
            self.release(handle)
        outcome = self.outcome(job, status, code, info)
        why = self.node_lost(handle, outcome)
        if why:  # the pool lost the machine under the run: said so, and the run may go again elsewhere
            return Outcome("failed", {"cell": None, "ename": "NodeLost", "evalue": why}, outcome.executor)
        return outcome

    def _no_room_here(self, handle: H, job: Job, info: dict[str, Any]) -> Outcome:
        """This machine's disk filled while the run's results came home: they stay there, whole."""
        kept = away.keep(self, handle, job)
        free = shutil.disk_usage(job.run_dir).free / 1e6
        words = (
            f"this machine's disk is full ({free:.1f} MB free in {job.run_dir.parent}) while the run's results came "
            f"home: they stay on {self.name}{f' ({kept})' if kept else ''}, and what came is in the run's folder"
        )
        log_line(job, words)
        return Outcome("failed", {"cell": None, "ename": "DiskFull", "evalue": words, "kept": job.kept[-1]}, info)

    def keep_there(self, handle: H) -> str:
        """Leave what holds the run's files on the machine (its results did not come home); what, in words."""
        return ""

    def _wait(self, handle: H, job: Job) -> tuple[str, int | None]:
        from ..remote.ssh import Unreachable

        deadline = time.monotonic() + job.timeout_s
        next_harvest = time.monotonic() + self.harvest_every_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop(handle)
                return "timeout", None
            try:
                code = self.poll(handle, job, max(0.1, min(left, next_harvest - time.monotonic(), POLL_MAX_S)))
                if code is None and time.monotonic() >= next_harvest:  # a dead engine later loses little
                    self._harvest(handle, job)
                    next_harvest = time.monotonic() + self.harvest_every_s
            except Unreachable as exc:
                if not self.rides_out_loss:
                    raise
                ended = away.mid_run(self, handle, job, exc, deadline)
                if ended is not None:
                    return ended
                continue  # it was back, the run still going there
            if code is not None:
                return "exited", code

    # -- a machine that goes away mid-run -------------------------------------------------
    # An executor that can find its run again after the machine answers again (``rides_out_loss``)
    # fills in ``answers`` (a cheap probe) and ``reconnect`` (the run's state there now).

    rides_out_loss = False

    def answers(self) -> bool:
        """Whether the machine answers again (a cheap probe: ssh with a short connect timeout)."""
        return False

    def reconnect(self, handle: H, job: Job, went_at: float) -> tuple[str, int | None, str]:
        """Once it answers: ``("running", None, "")`` when the run goes on there, ``("exited", exit code,
        "")`` when it ended there on its own meanwhile (only the connection dropped), else ``("ended", exit
        code or None, what happened in words)``; ``handle`` talks to it again either way."""
        raise NotImplementedError

    def _harvest(self, handle: H, job: Job) -> None:
        self.fetch(handle, job)
        for name in ("executed.ipynb", ENVIRONMENT_NAME):  # beside the notebook's own files
            if (job.run_dir / RESULT_DIR / name).exists():
                os.replace(job.run_dir / RESULT_DIR / name, job.run_dir / name)

    def outcome(self, job: Job, status: str, code: int | None, info: dict[str, Any]) -> Outcome:
        """``result.json`` and how the runner ended, as the run's outcome; files kept on that machine
        are named in its error (``kept``), for ``mm4watch fetch``."""
        found = self._outcome(job, status, code, info)
        if job.kept and found.error is not None:
            return Outcome(found.status, {**found.error, "kept": job.kept[-1]}, found.executor)
        return found

    def _outcome(self, job: Job, status: str, code: int | None, info: dict[str, Any]) -> Outcome:
        result_path = job.run_dir / RESULT_DIR / "result.json"
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError):
            result = None
        finally:
            shutil.rmtree(result_path.parent, ignore_errors=True)
        if status == "lost" and result is not None and result.get("status") in ("succeeded", "failed"):
            log_line(job, "the run had ended there on its own before the machine went away; its result came home")
            status = "exited"  # the notebook's own end, not the loss: no retry
        if status == "lost":
            cell = last_cell(job.log_path)
            return Outcome(
                "interrupted",
                {"cell": cell, "ename": "MiniLost", "evalue": job.lost[-1] if job.lost else "the machine went away"},
                info,
            )
        if status == "timeout":
            error = dict((result or {}).get("error") or {})
            error.update(ename="Timeout", evalue=f"the run exceeded its timeout of {format_duration(job.timeout_s)}")
            return Outcome("timeout", error, info)
        if result is None:
            if NO_SPACE in log_tail(job.log_path):  # even result.json found no room
                return Outcome("failed", {"cell": last_cell(job.log_path), **self.disk_full(None)}, info)
            return Outcome("failed", {"cell": None, "ename": "ProcessDied", "evalue": self.died_detail(code)}, info)
        error = result.get("error")
        if error and error.get("disk_full") is not None:
            error = {**error, **self.disk_full(error["disk_full"])}
        return Outcome(result["status"], error, info)

    def disk_full(self, found: dict[str, Any] | None) -> dict[str, Any]:
        """A full disk where the run writes, in words (``found``: the runner's free MB and folder)."""
        room = f" ({found['free_mb']} MB free in {found['path']}, where the run writes)" if found else ""
        return {
            "ename": "DiskFull",
            "evalue": f"the disk of {self.name} is full{room}: `mm4watch gc` frees space there; then run it again",
        }


# -- what goes into a container: shared by every executor that runs one ------------------
