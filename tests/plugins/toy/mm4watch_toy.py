"""A toy executor: each run in a workspace folder of its own on this machine, copied home at the end.

It stands for a third party's executor: one module and one settings dataclass, built only on
mm4watch's public parts (``Executor``, ``ExecutorConfig``, ``setting``, ``checks``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mm4watch.core import checks
from mm4watch.core.config import ConfigProblem, ExecutorConfig, setting
from mm4watch.core.runenv import ENV_OUTPUT_DIR
from mm4watch.executors import Job
from mm4watch.executors.base import Executor
from mm4watch.executors.far_side import RESULT_DIR, RUNNER, job_spec
from mm4watch.executors.upkeep import Checkup

PREFIX = "mm4-toy-"


@dataclass(frozen=True)
class ToyConfig(ExecutorConfig):
    """``type = "toy"``: ``slots`` runs at once, in workspaces under ``workspace``."""

    slots: int = setting(checks.positive_int, 2)
    workspace: str | None = setting(checks.abs_path)

    def check(self) -> None:
        if self.slots > 8:
            raise ConfigProblem("slots", f"is {self.slots}: a toy takes 8 runs at once at most")


@dataclass
class _Work:
    folder: Path
    process: subprocess.Popen[bytes] | None = None


class ToyExecutor(Executor[_Work]):
    type = "toy"
    config_class = ToyConfig
    elsewhere = False  # on this machine: it reads the results folder itself
    tag_options: ClassVar[dict[str, str]] = {"flavour": "a word the toy keeps in the run's record"}
    helpers: ClassVar[dict[str, str]] = {"hello": "mm4watch_toy:hello"}  # a process of its own, by name
    settings: ToyConfig

    def _base(self) -> Path:
        return Path(self.settings.workspace or tempfile.gettempdir())

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "host": "toybox", "slots": self.settings.slots}

    def prepare(self, job: Job, info: dict[str, Any]) -> _Work:
        if "flavour" in job.tag:  # its own tag option: # mm4: remote flavour=mint
            info["flavour"] = job.tag["flavour"]
        self._base().mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{job.key}-", dir=self._base()))
        (folder / "out" / RESULT_DIR).mkdir(parents=True)
        shutil.copy(job.input_path, folder / "input.ipynb")
        spec = job_spec(
            job, notebook=str(folder / "input.ipynb"), output_dir=str(folder / "out"), cwd=str(job.cwd),
            project=str(self.config.root), results=str(self.config.results_dir),
        )  # fmt: skip
        import json

        (folder / "spec.json").write_text(json.dumps(spec))
        return _Work(folder)

    def start(self, handle: _Work, job: Job) -> None:
        env = {**os.environ, ENV_OUTPUT_DIR: str(handle.folder / "out")}
        with open(job.log_path, "ab") as log:
            handle.process = subprocess.Popen(
                [sys.executable, "-m", RUNNER, str(handle.folder / "spec.json")], cwd=job.cwd, env=env,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def poll(self, handle: _Work, job: Job, wait_s: float) -> int | None:
        assert handle.process is not None
        try:
            return handle.process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return None

    def fetch(self, handle: _Work, job: Job) -> None:
        shutil.copytree(handle.folder / "out", job.run_dir, dirs_exist_ok=True)

    def stop(self, handle: _Work) -> None:
        if handle.process is not None and handle.process.poll() is None:
            handle.process.terminate()
            handle.process.wait(timeout=30)

    def release(self, handle: _Work) -> None:
        shutil.rmtree(handle.folder, ignore_errors=True)

    def doctor(self, report: Checkup) -> None:
        base = self._base()
        if os.access(base if base.exists() else base.parent, os.W_OK):
            report.ok("toy workspace", f"{base} is writable; {self.settings.slots} slot(s)")
        else:
            report.fail("toy workspace", f"{base} is not writable", "choose another workspace")

    def gc(self, keep: int | None) -> list[str]:
        old = sorted(self._base().glob(f"{PREFIX}*"))
        for folder in old:
            shutil.rmtree(folder, ignore_errors=True)
        return [f"toy: removed {len(old)} leftover workspace(s) under {self._base()}"]

    def capacity(self) -> int:
        return self.settings.slots


def hello(argv: list[str]) -> int:
    """The toy's helper: says hello to its arguments; exit 3 with none."""
    if not argv:
        print("hello to whom?", file=sys.stderr)
        return 3
    print("hello " + " ".join(argv))
    return 0
