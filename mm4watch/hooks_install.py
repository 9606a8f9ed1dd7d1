"""Installing the plain git hooks: chain what was there, recognise our own, restore on uninstall."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import mm4watch

from .errors import Mm4Error
from .hook import git

MARKER = "mm4watch-hook"
HOOKS = ("post-commit", "post-merge", "post-rewrite")
CHAINED = ".mm4watch-chained"

TEMPLATE = """#!/bin/sh
# {marker}: installed by `mm4watch install-hooks`; `mm4watch uninstall-hooks` restores what was here.
# Queues runs of the tagged notebooks a commit changed. Never fails the commit, never prompts.
here=$(dirname "$0")
{read_input}
if [ -x "$here/{name}{chained}" ]; then
    {feed}"$here/{name}{chained}" "$@" || true
fi
{feed}PYTHONPATH={libdir} {python} -S -m mm4watch.hook {name} "$@" || true
"""


def hooks_dir(root: Path) -> Path:
    """The repository's hooks folder, respecting core.hooksPath."""
    path = Path(git(root, "rev-parse", "--git-path", "hooks").decode().strip())
    return path if path.is_absolute() else root / path


def script(name: str) -> str:
    # -S skips site-packages' start-up work: the hook imports only the standard library and mm4watch
    libdir = Path(mm4watch.__file__).resolve().parent.parent
    # only post-rewrite gets input (the rewritten commits); the others read nothing
    takes_input = name == "post-rewrite"
    return TEMPLATE.format(
        marker=MARKER, name=name, chained=CHAINED, libdir=shlex.quote(str(libdir)), python=shlex.quote(sys.executable),
        read_input='input=$(cat)' if takes_input else "",
        feed="printf '%s\\n' \"$input\" | " if takes_input else "</dev/null ",
    )


def is_ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(errors="replace")
    except OSError:
        return False


def install(root: Path) -> list[str]:
    folder = hooks_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    report = []
    for name in HOOKS:
        path, chained = folder / name, folder / f"{name}{CHAINED}"
        if path.exists() and not is_ours(path):
            if chained.exists():
                raise Mm4Error(f"{path} is not mm4watch's and {chained} exists already; move one of them away first")
            path.rename(chained)
            report.append(f"kept your {name} hook as {chained.name}; it still runs first")
        path.write_text(script(name))
        path.chmod(0o755)
        report.append(f"installed {path}")
    return report


def uninstall(root: Path) -> list[str]:
    folder = hooks_dir(root)
    report = []
    for name in HOOKS:
        path, chained = folder / name, folder / f"{name}{CHAINED}"
        if path.exists() and is_ours(path):
            path.unlink()
            report.append(f"removed {path}")
            if chained.exists():
                chained.rename(path)
                report.append(f"restored your {name} hook")
    return report or ["no mm4watch hook installed"]
