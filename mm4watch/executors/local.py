"""The local executor: the runner in a child process on this machine (its transport only)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .. import proc
from ..config import ENV_OUTPUT_DIR, ENV_RUN_ID, Config, LocalConfig
from . import Job, Outcome
from .base import RESULT_DIR, RUNNER, STOP_GRACE_S, Executor, job_spec


@dataclass
class _Child:
    control: Path  # spec.json, outside the run folder
    log: IO[bytes] | None = None
    process: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class LocalExecutor(Executor[_Child]):
    type = "local"

    def __init__(self, cfg: LocalConfig, config: Config) -> None:
        # harvesting here is a rename: executed.ipynb shows progress every 2 s
        super().__init__(cfg, config, harvest_every_s=2.0)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "host": platform.node(),
            "arch": platform.machine(),
            "python": platform.python_version(),
        }

    def died_detail(self, code: int | None) -> str:
        return f"the papermill process ended with code {code} and no result; see run.log"

    def prepare(self, job: Job, info: dict[str, Any]) -> _Child | Outcome:
        control = Path(tempfile.mkdtemp(prefix="mm4-run-"))
        (job.run_dir / RESULT_DIR).mkdir(exist_ok=True)
        spec = job_spec(
            job,
            notebook=str(job.input_path),
            output_dir=str(job.run_dir),
            cwd=str(job.cwd),
            project=str(self.config.root),
            results=str(self.config.results_dir),
        )
        (control / "spec.json").write_text(json.dumps(spec))
        return _Child(control)

    def start(self, handle: _Child, job: Job) -> None:
        env = dict(os.environ)
        env.update({ENV_OUTPUT_DIR: str(job.run_dir), ENV_RUN_ID: job.run_id, "PYTHONUNBUFFERED": "1"})
        handle.log = open(job.log_path, "ab")  # noqa: SIM115 (closed in release)
        handle.process = proc.spawn(
            [sys.executable, "-m", RUNNER, str(handle.control / "spec.json")], cwd=job.cwd, env=env, stdout=handle.log
        )

    def poll(self, handle: _Child, job: Job, wait_s: float) -> int | None:
        assert handle.process is not None
        try:
            return handle.process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return None

    def fetch(self, handle: _Child, job: Job) -> None:
        return None  # the runner writes into the run folder itself

    def stop(self, handle: _Child) -> None:
        if handle.process is not None:
            proc.stop_tree(handle.process, STOP_GRACE_S)

    def release(self, handle: _Child) -> None:
        if handle.process is not None and handle.process.poll() is None:
            proc.stop_tree(handle.process, STOP_GRACE_S)  # never leave a kernel behind
        if handle.log is not None:
            handle.log.close()
        import shutil

        shutil.rmtree(handle.control, ignore_errors=True)

    def reattach(self, job: Job) -> Outcome | None:
        """A local run dies with its mm4watch process; stop what is left of it (its kernel)."""
        import psutil

        for process in psutil.process_iter():
            try:
                if process.environ().get(ENV_RUN_ID) == job.run_id:
                    process.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        return None
