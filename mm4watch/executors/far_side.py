"""What a run on another machine is given of mm4watch: the far side's files (the runner and the
helpers a notebook imports there, Python 3.9 and the standard library: a fresh Mac's
/usr/bin/python3), their digest, and the job spec the runner reads."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..core.runenv import ENV_PROJECT_DIR, ENV_RESULTS_DIR, ENV_RUN_ID
from . import Job

RESULT_DIR = ".mm4"  # in the run's output folder: executed.ipynb and result.json, so one fetch brings all


RUNNER = "mm4watch.far.runner"  # the module that runs papermill, on whichever machine runs the notebook


# What runs on the far side (the Mini, a container): the runner and the helpers a notebook imports
# there. Only these files are shipped, and they keep to Python 3.9 and the standard library (a fresh
# Mac's /usr/bin/python3 is 3.9); tests/test_far_side.py holds them to it.
FAR_SIDE = (
    "__init__.py",
    "core/__init__.py", "core/errors.py", "core/fsutil.py", "core/lean_imports.py",
    "far/__init__.py", "far/runner.py", "core/runenv.py", "far/helpers.py", "far/there.py", "far/venvs.py", "far/environment.py",
    "results/__init__.py", "results/records.py", "results/store.py", "results/metrics.py",
)  # fmt: skip


FAR_SIDE_PYTHON = (3, 9)


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
        "environment": job.record_environment,  # environment.txt: what the kernel ran with
        "env": {ENV_RUN_ID: job.run_id, ENV_PROJECT_DIR: project, ENV_RESULTS_DIR: results},
    }
