"""What a commit asks for: the tagged notebooks it changed, queued as committed.

Used by the git hooks (``hook.py``) and by the daemon, which drains what the
hooks noted. Lean on purpose: the standard library, git through ``git.call``,
and mm4watch's queue and tag parser (no GitPython, Docker or papermill).

The shell hooks note ``commit SHA`` or ``range BASE SHA`` in
``.mm4/commits.pending`` (durable); ``drain`` turns those lines into queue
entries, one drain at a time.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from ..core import config
from ..core.errors import Mm4Error, NotebookError
from ..core.git import call as git
from ..core.tags import read_tag
from .watcher import counts

NOTEBOOK_STATES = ("A", "M", "R", "C", "T")  # added, modified, renamed, copied, type changed


def in_sequence(root: Path) -> str | None:
    """What replays commits right now (rebase, cherry-pick sequence), if anything."""
    for name, what in (
        ("rebase-merge", "rebase"),
        ("rebase-apply", "rebase"),
        ("sequencer", "cherry-pick/revert sequence"),
    ):
        path = Path(git(root, "rev-parse", "--git-path", name).decode().strip())
        if not path.is_absolute():
            path = root / path
        if path.exists():
            return what
    return None


def changed_notebooks(root: Path, commit: str, folders: Sequence[str], base: str | None = None) -> list[str]:
    """Notebooks in ``folders`` that ``commit`` added or changed (against its first parent,
    or ``base``); renames count under their new name, deletions never."""
    parents = git(root, "rev-list", "--parents", "-n", "1", commit).decode().split()[1:]
    diff = ["diff-tree", "-r", "-M", "--no-commit-id", "--name-status", "-z"]
    if base:
        args = [*diff, base, commit]
    elif parents:
        args = [*diff, parents[0], commit]
    else:
        args = [*diff, "--root", commit]
    fields = [f for f in git(root, *args).decode().split("\0") if f]
    found, i = [], 0
    while i < len(fields):
        status = fields[i]
        if status[0] in ("R", "C"):
            path, i = fields[i + 2], i + 3
        else:
            path, i = fields[i + 1], i + 2
        pure = PurePosixPath(path)
        # the same rule as for saves: checkpoints and backups committed by mistake are not notebooks
        if status[0] in NOTEBOOK_STATES and counts(pure) and any(pure.is_relative_to(folder) for folder in folders):
            found.append(path)
    return sorted(set(found))


def queue_commit(cfg: config.Config, commit: str, base: str | None = None) -> list[str]:
    """Queue the tagged notebooks ``commit`` changed, as committed. Returns what was queued."""
    from ..queue import intake
    from ..queue.entries import Queue

    root = cfg.root
    sha = git(root, "rev-parse", "--verify", f"{commit}^{{commit}}").decode().strip()
    queued = []
    queue: Queue | None = None
    branch: str | None = None
    for path in changed_notebooks(root, sha, cfg.project.notebooks, base):
        # one notebook refused (not JSON, a bad tag, an executor mm4.toml lacks) costs that notebook
        # only: said, kept for `status`, and the commit's other notebooks still run
        try:
            content = git(root, "show", f"{sha}:{path}")
            _, tag = read_tag(content, f"{path} in commit {sha[:8]}")
            executor = cfg.executor(None, tag=tag.executor).name if tag is not None else ""
            if tag is not None and tag.sweep:
                from . import params

                sets = params.grid(tag.sweep)
        except Mm4Error as exc:
            reason = str(exc) if isinstance(exc, NotebookError) else f"{path} in commit {sha[:8]}: {exc}"
            print(f"mm4watch: not queued: {reason}", file=sys.stderr)
            queue = queue or Queue(cfg.state_dir)
            queue.note_refused(path, reason, trigger="commit")
            continue
        if tag is None:
            continue
        queue = queue or Queue(cfg.state_dir)
        if branch is None:
            head = git(root, "rev-parse", "HEAD").decode().strip()
            try:
                name = git(root, "symbolic-ref", "-q", "--short", "HEAD").decode().strip()
            except Mm4Error:
                name = ""  # detached
            branch = name if head == sha else ""
        if tag.sweep:  # a sweep's runs, each of that commit's notebook
            sweep_id, runs = intake.request_sweep(
                cfg, path, "commit", sets, content=content, commit_sha=sha, executor=executor,
                branch=branch or None, queue=queue,
            )  # fmt: skip
            queued.append(f"{path} (sweep {sweep_id}: {len(runs)} runs)")
            continue
        added = intake.request(
            cfg, path, "commit", content=content, commit_sha=sha, executor=executor, branch=branch or None, queue=queue
        )
        queued.append(path if added.merged_into is None else f"{path} ({intake.describe(added)})")
    return queued


PENDING = "commits.pending"
DRAINING = "commits.draining"


def note(root: Path, line: str) -> None:
    state = root / config.STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    with open(state / PENDING, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def drain(cfg: config.Config) -> list[str]:
    """Queue what the hooks noted; one drain at a time (a lock), nothing noted is lost."""
    import fcntl

    state = cfg.state_dir
    if not (state / PENDING).exists() and not (state / DRAINING).exists():
        return []
    queued: list[str] = []
    with open(state / "commits.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        while True:
            work = state / DRAINING
            if not work.exists():
                if not (state / PENDING).exists():
                    break
                os.replace(state / PENDING, work)
            for line in work.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                try:
                    if parts and parts[0] == "commit":
                        queued += queue_commit(cfg, parts[1])
                    elif parts and parts[0] == "range" and len(parts) >= 2:
                        base = parts[1] if len(parts) == 3 and parts[1] != "root" else None
                        queued += queue_commit(cfg, parts[-1], base=base)
                except Mm4Error as exc:
                    print(f"mm4watch: {line}: nothing queued: {exc}", file=sys.stderr)
            work.unlink()
    return queued
