"""The local executor: papermill in a child process on this machine."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .. import proc
from ..config import ENV_OUTPUT_DIR, ENV_RUN_ID, ExecutorConfig
from ..durations import format_duration
from . import Job, Outcome

STOP_GRACE_S = 10.0


class LocalExecutor:
    def __init__(self, cfg: ExecutorConfig) -> None:
        self.cfg = cfg

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.cfg.name,
            "type": "local",
            "host": platform.node(),
            "arch": platform.machine(),
            "python": platform.python_version(),
        }

    def check(self) -> None:
        return None

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

    def execute(self, job: Job) -> Outcome:
        control = Path(tempfile.mkdtemp(prefix="mm4-run-"))
        try:
            return self._execute(job, control)
        finally:
            shutil.rmtree(control, ignore_errors=True)

    def _execute(self, job: Job, control: Path) -> Outcome:
        result_path = control / "result.json"
        spec_path = control / "spec.json"
        spec_path.write_text(
            json.dumps(
                {
                    "input": str(job.input_path),
                    "output": str(job.run_dir / "executed.ipynb"),
                    "result": str(result_path),
                    "parameters": job.parameters,
                    "cwd": str(job.cwd),
                    "kernel": job.kernel,
                }
            )
        )
        env = dict(os.environ)
        env.update({ENV_OUTPUT_DIR: str(job.run_dir), ENV_RUN_ID: job.run_id, "PYTHONUNBUFFERED": "1"})
        argv = [sys.executable, "-m", "mm4watch.executors.papermill_child", str(spec_path)]
        timed_out = False
        with open(job.log_path, "ab") as log:
            child = proc.spawn(argv, cwd=job.cwd, env=env, stdout=log)
            try:
                code = child.wait(timeout=job.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                proc.stop_tree(child, STOP_GRACE_S)
                code = child.returncode
            except BaseException:  # ^C, or mm4watch itself being stopped
                proc.stop_tree(child, STOP_GRACE_S)
                raise
        result = _read_result(result_path)
        if timed_out:
            error = dict((result or {}).get("error") or {})
            error.update(ename="Timeout", evalue=f"the run exceeded its timeout of {format_duration(job.timeout_s)}")
            return Outcome("timeout", error)
        if result is None:
            return Outcome(
                "failed",
                {
                    "cell": None,
                    "ename": "ExecutorDied",
                    "evalue": f"papermill process ended with code {code} and no result; see run.log",
                },
            )
        return Outcome(result["status"], result.get("error"))


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
