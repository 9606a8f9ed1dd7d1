"""Provenance from git: HEAD, branch, dirty, and the notebook's diff against HEAD.

GitPython is imported lazily: the CLI's start-up and the git hook never pay for it.
Outside a repository (or without git installed) a run still works and records
``commit: null``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def call(root: Path, *args: str, input: bytes | None = None, index: Path | None = None) -> bytes:
    """``git ARGS`` in ``root``; its output, or an error that says what git said. With ``index``,
    git works on that index file instead of the user's (which stays as it was)."""
    import os

    from . import proc
    from .errors import Mm4Error

    env = None if index is None else {**os.environ, "GIT_INDEX_FILE": str(index)}
    done = proc.run(["git", *args], cwd=root, input=input, check=False, env=env)
    if done.returncode != 0:
        raise Mm4Error(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


@dataclass(frozen=True)
class Provenance:
    commit: dict[str, Any] | None  # {sha, branch, dirty}; None outside git
    patch: str | None  # unified diff HEAD -> the notebook (and the code) as run; None when identical
    tree: str | None = None  # git's tree id of the project files as run (notebook as on disk); None: unknown


def provenance(notebook: Path, content: bytes, code: Path | None = None, leave_out: tuple[str, ...] = ()) -> Provenance:
    """Where ``content`` (the notebook as it will run) stands against HEAD; with ``code`` (the
    project folder whose files the run ships), the patch also holds every file there that differs
    from HEAD, new files included, but for the folders in ``leave_out`` (results, data)."""
    try:
        import git  # GitPython
    except ImportError:  # GitPython raises ImportError when no git executable exists
        return Provenance(None, None)
    try:
        repo = git.Repo(notebook.parent, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return Provenance(None, None)
    with repo:
        if repo.bare or repo.working_tree_dir is None:
            return Provenance(None, None)
        top = Path(repo.working_tree_dir).resolve()
        rel = notebook.resolve().relative_to(top).as_posix()
        try:
            head = repo.head.commit
            sha: str | None = head.hexsha
        except ValueError:  # a repository with no commit yet
            head, sha = None, None
        branch = None if repo.head.is_detached else repo.head.ref.name
        committed: bytes | None = None
        if head is not None:
            try:
                committed = (head.tree / rel).data_stream.read()
            except KeyError:
                committed = None  # not in HEAD: a new notebook
        patch = None if committed == content else unified_patch(rel, committed, content)
        tree = None
        if code is not None and sha is not None:
            code_diff, tree = code_patch(top, code, rel, content, leave_out)
            patch = _joined(patch, code_diff)
        dirty = repo.is_dirty(untracked_files=False) or patch is not None
        return Provenance({"sha": sha, "branch": branch, "dirty": dirty}, patch, tree)


def code_patch(
    top: Path, code: Path, notebook: str, content: bytes, leave_out: tuple[str, ...] = ()
) -> tuple[str | None, str | None]:
    """Every file under ``code`` that differs from HEAD (changed, added, deleted; new files git
    does not ignore), as one binary-safe patch; the notebook (its own patch) and ``leave_out``
    folders (relative to ``code``) not in it. And the tree id of HEAD with those changes and the
    notebook as ``content`` (the blobs are stored in the repository, as ``git stash`` does).
    Built in an index of its own: the user's index is untouched."""
    import tempfile

    try:
        under = code.resolve().relative_to(top).as_posix()
    except ValueError:
        return None, None
    base = "" if under == "." else f"{under}/"
    specs = [*shipped_specs(top, base, leave_out), f":(top,exclude,literal){notebook}"]
    with tempfile.TemporaryDirectory(prefix="mm4-index-") as tmp:
        index = Path(tmp) / "index"
        call(top, "read-tree", "HEAD", index=index)
        call(top, "add", "-A", "--", *specs, index=index)
        diff = ["diff", "--cached", "--binary", "--no-color", "--no-ext-diff", "HEAD", "--", *specs]
        out = call(top, *diff, index=index)
        blob = call(top, "hash-object", "-w", "--stdin", input=content).decode().strip()
        call(top, "update-index", "--add", "--cacheinfo", f"100644,{blob},{notebook}", index=index)
        tree = call(top, "write-tree", index=index).decode().strip()
    return out.decode("utf-8", "surrogateescape") or None, tree or None


def shipped_specs(top: Path, base: str, leave_out: tuple[str, ...]) -> list[str]:
    """Pathspecs of the project files a run ships: the folder ``base`` (relative to ``top``, ending
    in ``/``; empty for the top), but for ``leave_out`` folders and what is never shipped."""
    from .fsutil import NEVER_SHIPPED

    specs = [f":(top,literal){base.rstrip('/')}" if base else ":/"]
    # a folder git ignores needs no exclusion (and git refuses one that names it). Asked as a folder
    # ("results/"): a `results/` rule matches a missing folder only so, and another run may make it
    # between this question and `git add`
    ignored = _ignored(top, [f"{base}{folder}/" for folder in leave_out if folder])
    specs += [f":(top,exclude,literal){base}{f}" for f in leave_out if f and f"{base}{f}/" not in ignored]
    specs += [f":(top,exclude,glob){base}**/{name}/**" for name in NEVER_SHIPPED if name != ".git"]
    return specs


def same_code(code: Path, tree: str, sha: str, leave_out: tuple[str, ...] = ()) -> bool:
    """Whether commit ``sha`` holds the project files of ``tree`` (a run's ``source.tree``): the
    notebooks and code under ``code`` a run ships; False when git cannot tell."""
    from . import proc

    try:
        top = Path(call(code, "rev-parse", "--show-toplevel").decode().strip())
        under = code.resolve().relative_to(top.resolve()).as_posix()
        specs = shipped_specs(top, "" if under == "." else f"{under}/", leave_out)
        done = proc.run(["git", "diff", "--quiet", tree, sha, "--", *specs], cwd=top, check=False, timeout=60)
    except Exception:  # no repository, no such tree: not the same, as far as anyone can tell
        return False
    return done.returncode == 0


def _ignored(top: Path, paths: list[str]) -> set[str]:
    """Those of ``paths`` (relative to ``top``) that git ignores."""
    from . import proc

    done = proc.run(["git", "check-ignore", "-z", "--stdin"], cwd=top, input="\0".join(paths).encode(), check=False)
    return set(done.stdout.decode("utf-8", "surrogateescape").split("\0")) - {""}


def tree_of(root: Path, sha: str) -> str | None:
    """The tree id of commit ``sha``; None if git cannot say."""
    try:
        return call(root, "rev-parse", "--verify", "--quiet", f"{sha}^{{tree}}").decode().strip() or None
    except Exception:  # no repository, no such commit: unknown
        return None


def _joined(first: str | None, second: str | None) -> str | None:
    parts = [p if p.endswith("\n") else p + "\n" for p in (first, second) if p]
    return "".join(parts) or None


def export(root: Path, sha: str, dest: Path, patch: str | None = None) -> Path:
    """The repository's files as committed in ``sha`` (then ``patch`` applied), written under
    ``dest``; returns the folder there that stands for ``root``. Through an index of its own:
    the user's index, work tree and refs are left as they were."""
    import os
    import tempfile

    from . import proc
    from .errors import Mm4Error

    top = Path(call(root, "rev-parse", "--show-toplevel").decode().strip())
    under = root.resolve().relative_to(top.resolve())
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mm4-index-") as tmp:
        index = Path(tmp) / "index"
        call(top, "read-tree", sha, index=index)
        call(top, "checkout-index", "--all", f"--prefix={dest.as_posix().rstrip('/')}/", index=index)
        if patch:
            (Path(tmp) / "run.patch").write_text(patch, encoding="utf-8", errors="surrogateescape")
            # applied as to plain files: no repository above ``dest`` is looked for
            env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(dest.parent)}
            done = proc.run(
                ["git", "apply", "--whitespace=nowarn", str(Path(tmp) / "run.patch")], cwd=dest, env=env, check=False
            )
            if done.returncode != 0:
                raise Mm4Error(
                    f"the run's patch does not apply to {sha[:12]}: {done.stderr.decode(errors='replace').strip()}"
                )
    return dest / under


def at_commit(notebook: Path, sha: str, patch: str | None) -> Provenance:
    """Provenance of a run of ``sha``'s notebook (plus ``patch``), whatever the work tree holds."""
    branch = None
    try:
        import git  # GitPython

        with git.Repo(notebook.parent, search_parent_directories=True) as repo:
            branch = None if repo.head.is_detached else repo.head.ref.name
    except Exception:  # no repository, or no branch yet: the record says no branch (the SHA is the provenance)
        branch = None
    return Provenance(
        {"sha": sha, "branch": branch, "dirty": patch is not None},
        patch,
        None if patch else tree_of(notebook.parent, sha),
    )


def rebuild(root: Path, sha: str | None, rel: str, patch: str | None) -> bytes:
    """The exact notebook a run executed: ``rel`` at ``sha``, with ``patch`` applied."""
    import tempfile

    from . import proc

    base = show(root, sha, rel) if sha else None
    if patch is None:
        if base is None:
            raise ValueError("no commit and no patch: nothing to rebuild from")
        return base
    with tempfile.TemporaryDirectory(prefix="mm4-rerun-") as tmp:
        target = Path(tmp) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if base is not None:
            target.write_bytes(base)
        (Path(tmp) / ".mm4.patch").write_text(patch)
        proc.run(["git", "apply", "--whitespace=nowarn", f"--include={rel}", ".mm4.patch"], cwd=Path(tmp))
        return target.read_bytes()


def unified_patch(rel: str, old: bytes | None, new: bytes) -> str:
    """A patch that ``git apply`` takes: HEAD's file (or nothing) -> ``new``."""
    old_lines = _lines(old) if old is not None else []
    new_lines = _lines(new)
    header = [f"diff --git a/{rel} b/{rel}\n"]
    if old is None:
        header.append("new file mode 100644\n")
    body = list(
        difflib.unified_diff(
            old_lines,
            new_lines,
            fromfile="/dev/null" if old is None else f"a/{rel}",
            tofile=f"b/{rel}",
        )
    )
    return "".join(header + body)


def _lines(data: bytes) -> list[str]:
    lines = data.decode("utf-8", errors="surrogateescape").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def show(root: Path, sha: str, rel: str) -> bytes:
    """The bytes of ``rel`` as committed in ``sha``."""
    import git  # GitPython

    from .errors import NotebookError

    with git.Repo(root, search_parent_directories=True) as repo:
        try:
            return (repo.commit(sha).tree / rel).data_stream.read()
        except (KeyError, ValueError, git.BadName) as exc:
            raise NotebookError(f"{rel} is not in commit {sha[:12]}: {exc}") from None


# -- telling git's own writes from the user's (the daemon; plain subprocess, no GitPython) --


def first_commit(root: Path) -> str | None:
    """The repository's first (root) commit: the same project wherever its folder is; None outside git."""
    from . import proc

    try:
        done = proc.run(["git", "rev-list", "--max-parents=0", "HEAD"], cwd=root, check=False, timeout=10)
    except (OSError, proc.CommandFailed):
        return None
    lines = done.stdout.decode().split()
    return lines[-1] if done.returncode == 0 and lines else None


def git_dir(root: Path) -> Path | None:
    """The repository's git folder (``.git``, or a worktree's), or None outside git."""
    from . import proc

    try:
        done = proc.run(["git", "rev-parse", "--absolute-git-dir"], cwd=root, check=False, timeout=10)
    except (OSError, proc.CommandFailed):
        return None
    return Path(done.stdout.decode().strip()) if done.returncode == 0 else None


def blob_sha(content: bytes) -> str:
    """The id git gives these bytes as a file."""
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def known_blobs(root: Path, folders: tuple[str, ...] | list[str]) -> dict[str, set[str]]:
    """Each file's blob id at HEAD and in the index, under ``folders``."""
    from . import proc

    found: dict[str, set[str]] = {}
    for argv in (
        ["git", "ls-tree", "-r", "-z", "HEAD", "--", *folders],
        ["git", "ls-files", "-s", "-z", "--", *folders],
    ):
        try:
            done = proc.run(argv, cwd=root, check=False, timeout=30)
        except (OSError, proc.CommandFailed):
            continue
        if done.returncode != 0:
            continue
        for item in done.stdout.decode("utf-8", "surrogateescape").split("\0"):
            meta, _, path = item.partition("\t")
            fields = meta.split()
            if path and len(fields) >= 3:
                found.setdefault(path, set()).add(fields[2] if fields[1] == "blob" else fields[1])
    return found


def last_operation(gitdir: Path, within_s: float = 30.0) -> str:
    """What git did last, in a word or two ("checkout", "reset", "pull", "stash"), from its logs."""
    import time

    newest: tuple[float, str] = (0.0, "git operation")
    for log, default in ((gitdir / "logs" / "HEAD", "git operation"), (gitdir / "logs" / "refs" / "stash", "stash")):
        try:
            mtime = log.stat().st_mtime
            if time.time() - mtime > within_s or mtime <= newest[0]:
                continue
            with open(log, "rb") as fh:
                fh.seek(max(0, log.stat().st_size - 4096))
                line = fh.read().decode("utf-8", "replace").rstrip("\n").rsplit("\n", 1)[-1]
            message = line.partition("\t")[2]
            word = message.split(":", 1)[0].strip() if ":" in message else default
            newest = (mtime, "stash" if default == "stash" else word or default)
        except OSError:
            continue
    return newest[1]


def head_sha(gitdir: Path) -> str | None:
    """HEAD's commit, read from the git folder's files (no process: the daemon asks often)."""
    try:
        head = (gitdir / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:]
        common = gitdir
        if (gitdir / "commondir").exists():  # a worktree: refs live in the main git folder
            common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
        for folder in (gitdir, common):
            if (folder / ref).is_file():
                return (folder / ref).read_text().strip() or None
        for line in (common / "packed-refs").read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
    except OSError:
        return None
    return None
