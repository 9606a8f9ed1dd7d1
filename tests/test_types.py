"""The package type-checks (mypy) and passes ruff's lint and format check (settings in pyproject.toml)."""

import subprocess
import sys

from conftest import REPO


def test_mypy_passes(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_lint_and_format_pass():
    for argv in (["check", "mm4watch", "tests", "bench"], ["format", "--check", "mm4watch", "tests", "bench"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *argv], cwd=REPO, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
