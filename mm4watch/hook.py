"""The git hooks' side: queue the tagged notebooks a commit changed; check staged notebooks.

    mm4watch-hook post-commit           queue runs for HEAD (git's post-commit hook)
    mm4watch-hook post-merge            after `git merge`/`pull` (which run no post-commit): ORIG_HEAD..HEAD
    mm4watch-hook post-rewrite rebase   after a rebase: queue once for the final state
    mm4watch-hook drain                 queue what the shell hooks noted in .mm4/commits.pending
    mm4watch-hook check FILE...         pre-commit stage: staged notebooks must parse

The hooks `mm4watch install-hooks` writes are shell: they note ``commit SHA``
or ``range BASE SHA`` in ``.mm4/commits.pending`` (durable) and start a
background ``drain``; the daemon drains that file too. The Python hook
commands here (what the pre-commit framework's python hooks call) note and
drain at once.

Lean on purpose: only the standard library, git through subprocess, and
mm4watch's queue and tag parser are imported (no GitPython, Docker or
papermill), and the post-commit path never fails the commit and never prompts.
While a rebase or a multi-commit cherry-pick is in progress, post-commit
queues nothing: the post-rewrite hook queues once when the rebase ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from . import config
from .errors import ConfigError, Mm4Error, NotebookError
from .tags import find_tag, loads_notebook
from .watcher import counts

NOTEBOOK_STATES = ("A", "M", "R", "C", "T")  # added, modified, renamed, copied, type changed


def git(root: Path, *args: str, input: bytes | None = None) -> bytes:
    done = subprocess.run(["git", *args], cwd=root, input=input, capture_output=True)
    if done.returncode != 0:
        raise Mm4Error(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


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
    from . import intake
    from .queue import Queue

    root = cfg.root
    sha = git(root, "rev-parse", "--verify", f"{commit}^{{commit}}").decode().strip()
    queued = []
    queue: Queue | None = None
    branch: str | None = None
    for path in changed_notebooks(root, sha, cfg.project.notebooks, base):
        content = git(root, "show", f"{sha}:{path}")
        try:
            tag = find_tag(loads_notebook(content.decode("utf-8"), path), path)
        except (NotebookError, UnicodeDecodeError) as exc:
            print(f"mm4watch: not queued: {exc}", file=sys.stderr)
            continue
        if tag is None:
            continue
        executor = cfg.executor(None, tag=tag.executor).name
        queue = queue or Queue(cfg.state_dir)
        if branch is None:
            head = git(root, "rev-parse", "HEAD").decode().strip()
            name = subprocess.run(["git", "symbolic-ref", "-q", "--short", "HEAD"], cwd=root, capture_output=True)
            branch = name.stdout.decode().strip() if head == sha and name.returncode == 0 else ""
        added = intake.request(
            cfg, path, "commit", content=content, commit_sha=sha, executor=executor, branch=branch or None, queue=queue
        )
        queued.append(path if added.merged_into is None else f"{path} ({intake.describe(added)})")
    return queued


def _say_queued(cfg: config.Config, queued: list[str], sha: str) -> None:
    if not queued:
        return
    from .pidlock import read_info

    what = f"queued {len(queued)} run(s) for {sha[:8]}: {', '.join(queued)}"
    if read_info(cfg.state_dir):
        print(f"mm4watch: {what}", file=sys.stderr)
    elif cfg.daemon.autostart:
        subprocess.Popen(
            [sys.executable, "-m", "mm4watch", "start"],
            cwd=cfg.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        print(f"mm4watch: {what}; starting the daemon", file=sys.stderr)
    else:
        print(f"mm4watch: {what}; the daemon is not running, they wait (mm4watch start)", file=sys.stderr)


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


def post_commit(root: Path) -> None:
    sequence = in_sequence(root)
    if sequence:
        return  # post-rewrite queues the final state once the rebase ends
    cfg = config.load(root)
    sha = git(root, "rev-parse", "HEAD").decode().strip()
    note(root, f"commit {sha}")
    _say_queued(cfg, drain(cfg), sha)


def post_merge(root: Path) -> None:
    """A merge commits without post-commit: queue what it brought, ORIG_HEAD to HEAD."""
    if in_sequence(root):
        return
    cfg = config.load(root)
    sha = git(root, "rev-parse", "HEAD").decode().strip()
    base = git(root, "rev-parse", "--verify", "-q", "ORIG_HEAD").decode().strip() or "root"
    note(root, f"range {base} {sha}")
    _say_queued(cfg, drain(cfg), sha)


def post_rewrite(root: Path, kind: str, pairs: str) -> None:
    """After ``git rebase``: the notebooks the rewritten commits changed, queued once at HEAD.

    git gives the rewritten commits on stdin; under the pre-commit framework,
    which does not, the range is ORIG_HEAD's fork point to HEAD."""
    if kind != "rebase":
        return  # an amend already ran post-commit
    cfg = config.load(root)
    sha = git(root, "rev-parse", "HEAD").decode().strip()
    new = [line.split()[1] for line in pairs.splitlines() if len(line.split()) >= 2]
    if new:
        parents = git(root, "rev-list", "--parents", "-n", "1", new[0]).decode().split()[1:]
        base = parents[0] if parents else None
    else:
        base = git(root, "merge-base", "ORIG_HEAD", "HEAD").decode().strip() or None
    # everything the rebased range changed, read as it is at the end of it
    note(root, f"range {base or 'root'} {sha}")
    _say_queued(cfg, drain(cfg), sha)


def _stdin_if_any() -> str:
    import select

    if sys.stdin is None or sys.stdin.isatty():
        return ""
    ready, _, _ = select.select([sys.stdin], [], [], 0.5)
    return sys.stdin.read() if ready else ""


def check(files: Sequence[str], no_outputs: bool) -> int:
    """Pre-commit stage: every staged notebook parses; a tagged one's tag is valid."""
    failed = 0
    for name in files:
        if not name.endswith(".ipynb") or not os.path.exists(name):
            continue
        try:
            with open(name, encoding="utf-8") as fh:
                nb = loads_notebook(fh.read(), name)
            tag = find_tag(nb, name)
        except (NotebookError, UnicodeDecodeError) as exc:
            print(f"mm4watch: {exc}", file=sys.stderr)
            failed += 1
            continue
        if tag is not None and no_outputs:
            with_outputs = [i for i, c in enumerate(nb["cells"]) if c.get("cell_type") == "code" and c.get("outputs")]
            if with_outputs:
                print(
                    f"mm4watch: {name}: tagged notebook carries outputs in cell(s) {with_outputs}; "
                    "results belong in its run folder. Clear outputs (Jupyter: Edit > Clear All Outputs) and stage again",
                    file=sys.stderr,
                )
                failed += 1
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    if args[0] == "check":
        no_outputs = "--no-outputs" in args
        return check([a for a in args[1:] if a != "--no-outputs"], no_outputs)
    try:
        root = Path(git(Path.cwd(), "rev-parse", "--show-toplevel").decode().strip())
        if args[0] == "drain":
            drain(config.load(root))
        elif args[0] == "post-commit":
            post_commit(root)
        elif args[0] == "post-merge":
            post_merge(root)
        elif args[0] == "post-rewrite":
            kind = args[1] if len(args) > 1 else os.environ.get("PRE_COMMIT_REWRITE_COMMAND", "")
            post_rewrite(root, kind, _stdin_if_any())
        else:
            print(f"mm4watch-hook: unknown hook {args[0]!r}", file=sys.stderr)
    except (Mm4Error, ConfigError) as exc:
        print(f"mm4watch: nothing queued: {exc}", file=sys.stderr)
    except Exception as exc:  # a hook never fails the commit
        print(f"mm4watch: nothing queued (unexpected: {type(exc).__name__}: {exc})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
