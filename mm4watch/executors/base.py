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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..core.config import Config, ExecutorConfig
from ..core.durations import format_duration
from ..run.runenv import ENV_PROJECT_DIR, ENV_RESULTS_DIR, ENV_RUN_ID
from . import Job, Outcome

RESULT_DIR = ".mm4"  # in the run's output folder: executed.ipynb and result.json, so one fetch brings all
STOP_GRACE_S = 10.0  # TERM first: papermill saves what ran; KILL after this
RUNNER = "mm4watch.run.runner"  # the module that runs papermill, on whichever machine runs the notebook
# What runs on the far side (the Mini, a container): the runner and the helpers a notebook imports
# there. Only these files are shipped, and they keep to Python 3.9 and the standard library (a fresh
# Mac's /usr/bin/python3 is 3.9); tests/test_far_side.py holds them to it.
FAR_SIDE = (
    "__init__.py",
    "core/__init__.py", "core/errors.py", "core/fsutil.py",
    "run/__init__.py", "run/runner.py", "run/runenv.py", "run/helpers.py",
    "results/__init__.py", "results/records.py", "results/store.py", "results/metrics.py",
)  # fmt: skip
FAR_SIDE_PYTHON = (3, 9)
POLL_MAX_S = 30.0

H = TypeVar("H")


def runner_files() -> tuple[Path, list[Path]]:
    """mm4watch's own package folder and the files of it the far side needs (``FAR_SIDE``)."""
    import mm4watch

    package = Path(mm4watch.__file__).parent
    return package, [package / name for name in FAR_SIDE]


def far_side_includes() -> list[str]:
    """rsync filter rules that let through the far side's files (and their folders) and nothing else."""
    folders = sorted({name.rpartition("/")[0] for name in FAR_SIDE if "/" in name})
    return [*(f"--include=/{folder}/" for folder in folders), *(f"--include=/{name}" for name in FAR_SIDE)]


def runner_digest() -> str:
    """One digest of the far side's code (what warm containers and the Mini's copy are keyed on)."""
    package, files = runner_files()
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def log_line(job: Job, line: str) -> None:
    """One line of mm4watch's own in the run's run.log, with its time."""
    from ..results.records import now_iso

    with open(job.log_path, "a", encoding="utf-8") as fh:
        fh.write(f"[{now_iso()}] mm4watch: {line}\n")


def job_spec(job: Job, *, notebook: str, output_dir: str, cwd: str, project: str, results: str) -> dict[str, Any]:
    """What the runner reads: where the notebook is, where its output and result go, and what the run
    is told (``runenv``): the project's root and its earlier results as the run sees them."""
    return {
        "input": notebook,
        "output": f"{output_dir}/{RESULT_DIR}/executed.ipynb",
        "result": f"{output_dir}/{RESULT_DIR}/result.json",
        "parameters": job.parameters,
        "cwd": cwd,
        "kernel": job.kernel,
        "env": {ENV_RUN_ID: job.run_id, ENV_PROJECT_DIR: project, ENV_RESULTS_DIR: results},
    }


class Executor(Generic[H]):
    """Base of every executor: subclasses write the transport (see the module docstring)."""

    type = "base"
    died = "the runner ended without a result"  # how an end without result.json reads, per executor

    def __init__(self, cfg: ExecutorConfig, config: Config, harvest_every_s: float | None = None) -> None:
        self.cfg = cfg
        self.config = config
        self.name = cfg.name
        self.harvest_every_s = harvest_every_s or cfg.harvest_every_s

    # -- what each executor writes -----------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type}

    def check(self) -> None:
        """Raise ``ssh.Unreachable`` when the executor cannot take a run now."""

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

    # -- the shared steps ------------------------------------------------------------

    def execute(self, job: Job) -> Outcome:
        info = dict(self.describe())
        job.phase(f"preparing on {self.name}")
        prepared = self.prepare(job, info)
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
        handle = self.find(job, info)
        if handle is None:
            return None
        return self._follow(handle, job, info)

    def _follow(self, handle: H, job: Job, info: dict[str, Any]) -> Outcome:
        try:
            try:
                status, code = self._wait(handle, job)
            except KeyboardInterrupt:  # ^C or cancel: stop it, keep what it wrote
                self.stop(handle)
                job.phase("bringing results home")
                self._harvest(handle, job)
                raise
            job.phase("bringing results home")
            self._harvest(handle, job)
        finally:
            self.release(handle)
        return self.outcome(job, status, code, info)

    def _wait(self, handle: H, job: Job) -> tuple[str, int | None]:
        deadline = time.monotonic() + job.timeout_s
        next_harvest = time.monotonic() + self.harvest_every_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop(handle)
                return "timeout", None
            code = self.poll(handle, job, max(0.1, min(left, next_harvest - time.monotonic(), POLL_MAX_S)))
            if code is not None:
                return "exited", code
            if time.monotonic() >= next_harvest:  # a dead engine later loses little
                self._harvest(handle, job)
                next_harvest = time.monotonic() + self.harvest_every_s

    def _harvest(self, handle: H, job: Job) -> None:
        self.fetch(handle, job)
        executed = job.run_dir / RESULT_DIR / "executed.ipynb"
        if executed.exists():
            os.replace(executed, job.run_dir / "executed.ipynb")

    def outcome(self, job: Job, status: str, code: int | None, info: dict[str, Any]) -> Outcome:
        """``result.json`` and how the runner ended, as the run's outcome."""
        result_path = job.run_dir / RESULT_DIR / "result.json"
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError):
            result = None
        finally:
            shutil.rmtree(result_path.parent, ignore_errors=True)
        if status == "timeout":
            error = dict((result or {}).get("error") or {})
            error.update(ename="Timeout", evalue=f"the run exceeded its timeout of {format_duration(job.timeout_s)}")
            return Outcome("timeout", error, info)
        if result is None:
            return Outcome("failed", {"cell": None, "ename": "ProcessDied", "evalue": self.died_detail(code)}, info)
        return Outcome(result["status"], result.get("error"), info)
