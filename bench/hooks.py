"""What the git hook costs a commit (targets: at most 100 ms more, median of 20).

1. Plain git hook: `git commit` of a changed tagged notebook with mm4watch's
   installed post-commit hook against the same commit with no hook, alternating
   in one repository.
2. Through the pre-commit framework: mm4watch's post-commit hook against a
   no-op post-commit hook (`true`), both run by pre-commit.

Usage: python bench/hooks.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import notebook as _notebook

REPO = Path(__file__).resolve().parents[1]
NOOP_CONFIG = """repos:
  - repo: local
    hooks:
      - id: noop
        name: no-op
        entry: "true"
        language: unsupported
        stages: [post-commit]
        always_run: true
        pass_filenames: false
"""


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def make_repo(path: Path) -> Path:
    (path / "notebooks").mkdir(parents=True)
    (path / "mm4.toml").write_text("[run]\n")
    (path / ".gitignore").write_text("results/\n.mm4/\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "bench@example.com")
    git(path, "config", "user.name", "bench")
    (path / "notebooks" / "n.ipynb").write_text(_notebook("# mm4: remote\nv = 0"))
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return path


class Counter:
    value = 0


def timed_commit(root: Path, env: dict[str, str]) -> float:
    Counter.value += 1
    (root / "notebooks" / "n.ipynb").write_text(_notebook(f"# mm4: remote\nv = {Counter.value}"))
    git(root, "add", "-A")
    t0 = time.perf_counter()
    subprocess.run(
        ["git", "commit", "-q", "-m", f"c{Counter.value}"], cwd=root, env=env, check=True, capture_output=True
    )
    return time.perf_counter() - t0


def hooks_dir(root: Path) -> Path:
    return root / ".git" / "hooks"


def plain(root: Path, rounds: int) -> tuple[float, float]:
    subprocess.run([sys.executable, "-m", "mm4watch", "install-hooks"], cwd=root, check=True, capture_output=True)
    installed = {name: (hooks_dir(root) / name).read_text() for name in ("post-commit", "post-merge", "post-rewrite")}
    env = dict(os.environ)
    with_hook, without = [], []
    for _ in range(rounds):
        for name, text in installed.items():
            (hooks_dir(root) / name).write_text(text)
            (hooks_dir(root) / name).chmod(0o755)
        with_hook.append(timed_commit(root, env))
        for name in installed:
            (hooks_dir(root) / name).unlink()
        without.append(timed_commit(root, env))
    return statistics.median(with_hook), statistics.median(without)


def through_pre_commit(root: Path, rounds: int, cache: Path) -> tuple[float, float]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(cache)}
    ours = (REPO / ".pre-commit-config.yaml").read_text()
    for config in (NOOP_CONFIG, ours):  # warm pre-commit's cache for both
        (root / ".pre-commit-config.yaml").write_text(config)
        subprocess.run(
            [sys.executable, "-m", "pre_commit", "install", "--hook-type", "post-commit"],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
        )
        timed_commit(root, env)
    mm4, noop = [], []
    for _ in range(rounds):
        (root / ".pre-commit-config.yaml").write_text(ours)
        mm4.append(timed_commit(root, env))
        (root / ".pre-commit-config.yaml").write_text(NOOP_CONFIG)
        noop.append(timed_commit(root, env))
    return statistics.median(mm4), statistics.median(noop)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if not shutil.which("mm4watch-hook"):
        sys.exit("mm4watch-hook is not on PATH: pip install -e . first")
    with tempfile.TemporaryDirectory(prefix="mm4-bench-hooks-") as tmp:
        with_hook, without = plain(make_repo(Path(tmp) / "plain"), args.rounds)
        extra = (with_hook - without) * 1000
        print(f"1. plain git hook, median of {args.rounds} alternating commits")
        print(
            f"   git commit with mm4watch's hook {with_hook * 1000:6.1f} ms; without a hook {without * 1000:6.1f} ms "
            f"-> +{extra:.0f} ms (target: at most +100 ms)"
        )
        ours, noop = through_pre_commit(make_repo(Path(tmp) / "pc"), args.rounds, Path(tmp) / "cache")
        extra_pc = (ours - noop) * 1000
        print(f"2. through pre-commit, median of {args.rounds} alternating commits")
        print(
            f"   mm4watch's post-commit hook {ours * 1000:6.1f} ms; a no-op post-commit hook {noop * 1000:6.1f} ms "
            f"-> +{extra_pc:.0f} ms (target: at most +100 ms)"
        )
    ok = extra <= 100 and extra_pc <= 100
    print("all targets met" if ok else "some targets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
