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

Lean on purpose: only the standard library, git through ``git.call``, and
mm4watch's queue and tag parser are imported (no GitPython, Docker or
papermill), and the post-commit path never fails the commit and never prompts.
What a commit queues is decided in ``commits.py``, which the daemon uses too.
While a rebase or a multi-commit cherry-pick is in progress, post-commit
queues nothing: the post-rewrite hook queues once when the rebase ends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..core import config, proc
from ..core.errors import Mm4Error, NotebookError
from ..core.git import call as git
from ..core.tags import near_misses, read_tag
from .commits import drain, in_sequence, note

__all__ = ["check", "drain", "main"]


def _say_queued(cfg: config.Config, queued: list[str], sha: str) -> None:
    if not queued:
        return
    from ..queue.active import read_info

    what = f"queued {len(queued)} run(s) for {sha[:8]}: {', '.join(queued)}"
    if read_info(cfg.state_dir):
        print(f"mm4watch: {what}", file=sys.stderr)
    elif cfg.daemon.autostart:
        proc.detach(proc.command("start"), cwd=cfg.root)
        print(f"mm4watch: {what}; starting the daemon", file=sys.stderr)
    else:
        print(f"mm4watch: {what}; the daemon is not running, they wait (mm4watch start)", file=sys.stderr)


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
    """Every notebook parses, a tagged one's tag is valid, and no comment is a near miss of the tag
    (``# mm4: remtoe``); the pre-commit stage and ``mm4watch check``. Exit 1 when any is not so."""
    failed = 0
    for name in files:
        if not name.endswith(".ipynb") or not os.path.exists(name):
            continue
        try:
            with open(name, "rb") as fh:
                nb, tag = read_tag(fh.read(), name)
        except NotebookError as exc:
            print(f"mm4watch: {exc}", file=sys.stderr)
            failed += 1
            continue
        for problem in near_misses(nb, name):
            print(f"mm4watch: {problem}", file=sys.stderr)
            failed += 1
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
    if args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
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
            kind = args[1] if len(args) > 1 else config.env("PRE_COMMIT_REWRITE_COMMAND") or ""
            post_rewrite(root, kind, _stdin_if_any())
        else:
            print(f"mm4watch-hook: unknown hook {args[0]!r}", file=sys.stderr)
    except Mm4Error as exc:
        print(f"mm4watch: nothing queued: {exc}", file=sys.stderr)
    except Exception as exc:  # a hook never fails the commit
        print(f"mm4watch: nothing queued (unexpected: {type(exc).__name__}: {exc})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
