"""Shared fixtures: real folders, real git repositories, real notebooks.

Every test runs with HOME pointed into its own temp folder and with the MM4_*
variables cleared, so nothing reads or writes the real home or inherits a
developer's settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith("MM4_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def code(source: str, **metadata: Any) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": metadata, "source": source, "outputs": [], "execution_count": None}


def markdown(source: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def notebook_json(*cells: dict[str, Any]) -> str:
    nb = {
        "cells": list(cells),
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    for i, cell in enumerate(nb["cells"]):
        cell.setdefault("id", f"cell-{i}")
    return json.dumps(nb, indent=1) + "\n"


def write_notebook(path: Path, *cells: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(notebook_json(*cells))
    return path


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project with an mm4.toml that uses the local executor."""
    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    (root / "mm4.toml").write_text('[run]\nexecutor = "local"\ntimeout = "2m"\n')
    return root


@pytest.fixture
def repo(project: Path) -> Path:
    """The project as a git repository with one commit."""
    git(project, "init", "-q", "-b", "main")
    (project / ".gitignore").write_text("results/\n.mm4/\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "init")
    return project


def mm4(
    args: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """The real command line, in its own process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mm4watch", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def mm4_background(args: Sequence[str], cwd: Path) -> subprocess.Popen[str]:
    """The real command line, left running while the test acts on it."""
    return subprocess.Popen(
        [sys.executable, "-m", "mm4watch", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(condition: Any, timeout: float = 60, what: str = "condition", every: float = 0.1) -> Any:
    """The first true value of ``condition()``; fails the test after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def first_run(project: Path, ready: Any, timeout: float = 60, what: str = "the run") -> Path:
    """The project's first run folder once ``ready(folder)`` holds."""
    return wait_for(lambda: next((d for d in run_dirs(project)[:1] if ready(d)), None), timeout, what, every=0.2)


def run_dirs(project: Path) -> list[Path]:
    results = project / "results"
    return sorted(p for p in results.iterdir() if p.is_dir()) if results.exists() else []


def load_record(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run.json").read_text())


# ---------------------------------------------------------------------------
# the two-machine rig (tests/rig/up.sh): a fake Mini reached only over SSH

RIG_ENV = Path(os.environ.get("MM4_RIG_DIR", "/var/lib/mm4watch-rig")) / "rig.env"
TEST_DOCKERFILE = """FROM python:3.11-slim
RUN pip install --no-cache-dir "papermill>=2.6" "ipykernel>=6.29"
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt
WORKDIR /project
COPY . /project
"""


@pytest.fixture(scope="session")
def mini() -> dict[str, str]:
    """The fake Mini's address. A missing rig fails under CI and skips elsewhere."""
    if not RIG_ENV.exists():
        message = f"the test rig is not up ({RIG_ENV} missing): run `bash tests/rig/up.sh` as root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    values = dict(line.split("=", 1) for line in RIG_ENV.read_text().split() if "=" in line)
    probe = subprocess.run(
        ["ssh", *mini_ssh_args(values), "docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        message = f"the fake Mini does not answer: {probe.stderr.strip()} (run `bash tests/rig/up.sh`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return values


def mini_ssh_options(values: dict[str, str]) -> list[str]:
    return [
        "-i",
        values["MINI_KEY"],
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
    ]


def mini_ssh_args(values: dict[str, str]) -> list[str]:
    return ["-p", values["MINI_PORT"], *mini_ssh_options(values), f"{values['MINI_USER']}@{values['MINI_HOST']}"]


def on_mini(values: dict[str, str], command: str) -> str:
    done = subprocess.run(["ssh", *mini_ssh_args(values), command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def mini_toml(values: dict[str, str], *, port: str | None = None, extra: str = "", timeout: str = "10m") -> str:
    options = ", ".join(json.dumps(o) for o in mini_ssh_options(values))
    return (
        f'[run]\nexecutor = "mini"\ntimeout = "{timeout}"\n\n'
        f'[executors.mini]\ntype = "docker"\n'
        f'host = "ssh://{values["MINI_USER"]}@{values["MINI_HOST"]}:{port or values["MINI_PORT"]}"\n'
        f"ssh_options = [{options}]\n{extra}"
    )


@pytest.fixture
def mini_project(tmp_path: Path, mini: dict[str, str]) -> Path:
    """A project whose runs go to the fake Mini."""
    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    (root / "Dockerfile").write_text(TEST_DOCKERFILE)
    (root / "requirements.txt").write_text("# nothing beyond papermill\n")
    (root / "mm4.toml").write_text(mini_toml(mini))
    # content no earlier test run had, so the first run builds a new image
    (root / "marker.txt").write_text(uuid.uuid4().hex)
    return root
