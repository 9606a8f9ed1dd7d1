"""The package type-checks (mypy, configured in pyproject.toml)."""
import subprocess
import sys

from conftest import REPO


def test_mypy_passes(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
