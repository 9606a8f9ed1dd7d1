"""The local executor: the runner in a child process on this machine (its transport only)."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..core import proc
from ..core.config import Config, ExecutorConfig
from ..core.runenv import ENV_OUTPUT_DIR, ENV_RUN_ID
from . import Job, Outcome
from .base import STOP_GRACE_S, Executor
from .far_side import RESULT_DIR, RUNNER, job_spec
from .upkeep import Checkup


@dataclass(frozen=True)
class LocalConfig(ExecutorConfig):
    """``type = "local"``: the runner in a child process on this machine."""

    not_keys = frozenset({"harvest_every"})  # it writes into the run folder itself: nothing to harvest


@dataclass
class _Child:
    control: Path | None  # spec.json, outside the run folder
    log: IO[bytes] | None = None
    process: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    found: Any = None  # psutil.Process: a runner whose mm4watch process died, followed again
    ended: bool = False  # that runner ended already: its result is in the run folder


class LocalExecutor(Executor[_Child]):
    config_class = LocalConfig
    elsewhere = False  # it reads this machine's results folder itself
    type = "local"

    def __init__(self, settings: LocalConfig, config: Config) -> None:
        # harvesting here is a rename: executed.ipynb shows progress every 2 s
        super().__init__(settings, config, harvest_every_s=2.0)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "host": platform.node(),
            "arch": platform.machine(),
            "python": platform.python_version(),
        }

    def died_detail(self, code: int | None) -> str:
        return f"the papermill process ended with code {code} and no result; see run.log"

    def doctor(self, report: Checkup) -> None:
        report.ok("python", f"{sys.version.split()[0]} ({sys.executable})")
        for module in ("papermill", "ipykernel"):
            if importlib.util.find_spec(module) is None:
                report.fail(module, "not installed", f"pip install {module}")
            else:
                report.ok(module, "installed")

    def prepare(self, job: Job, info: dict[str, Any]) -> _Child | Outcome:
        control = Path(tempfile.mkdtemp(prefix="mm4-run-"))
        (job.run_dir / RESULT_DIR).mkdir(exist_ok=True)
        spec = job_spec(
            job,
            notebook=str(job.input_path),
            output_dir=str(job.run_dir),
            cwd=str(job.cwd),
            project=str(self.config.code_root),
            results=str(self.config.results_dir),
        )
        (control / "spec.json").write_text(json.dumps(spec))
        return _Child(control)

    def start(self, handle: _Child, job: Job) -> None:
        env = dict(os.environ)
        env.update({ENV_OUTPUT_DIR: str(job.run_dir), ENV_RUN_ID: job.run_id, "PYTHONUNBUFFERED": "1"})
        handle.log = open(job.log_path, "ab")  # noqa: SIM115 (closed in release)
        assert handle.control is not None
        handle.process = proc.spawn(
            [sys.executable, "-m", RUNNER, str(handle.control / "spec.json")], cwd=job.cwd, env=env, stdout=handle.log
        )

    def poll(self, handle: _Child, job: Job, wait_s: float) -> int | None:
        if handle.ended:
            return 0
        if handle.found is not None:  # not our child: its end is seen, its code is in result.json
            import psutil

            try:
                handle.found.wait(timeout=wait_s)
            except psutil.TimeoutExpired:
                return None
            return 0
        assert handle.process is not None
        try:
            return handle.process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return None

    def fetch(self, handle: _Child, job: Job) -> None:
        return None  # the runner writes into the run folder itself

    def stop(self, handle: _Child) -> None:
        if handle.found is not None:
            proc.stop_pid_tree(handle.found.pid, STOP_GRACE_S)
        elif handle.process is not None:
            proc.stop_tree(handle.process, STOP_GRACE_S)

    def release(self, handle: _Child) -> None:
        if handle.found is not None and handle.found.is_running():
            proc.stop_pid_tree(handle.found.pid, STOP_GRACE_S)
        if handle.process is not None and handle.process.poll() is None:
            proc.stop_tree(handle.process, STOP_GRACE_S)  # never leave a kernel behind
        if handle.log is not None:
            handle.log.close()
        if handle.control is not None:
            import shutil

            shutil.rmtree(handle.control, ignore_errors=True)

    def find(self, job: Job, info: dict[str, Any]) -> _Child | None:
        """The run's runner, still going after its mm4watch process died (it writes into the run
        folder itself: following it to its end brings everything home)."""
        import psutil

        for process in psutil.process_iter(["cmdline"]):
            try:
                if RUNNER in (process.info["cmdline"] or []) and process.environ().get(ENV_RUN_ID) == job.run_id:
                    return _Child(None, found=process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        if (job.run_dir / RESULT_DIR / "result.json").exists():  # it ended while nobody watched
            return _Child(None, ended=True)
        # nothing of it runs: a kernel it left would wait for ever
        for process in psutil.process_iter():
            try:
                if process.environ().get(ENV_RUN_ID) == job.run_id:
                    process.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        return None
