"""Installing the plain git hooks: chain what was there, recognise our own, restore on uninstall."""

from __future__ import annotations

import sys
from pathlib import Path

import mm4watch

from .errors import Mm4Error
from .git import call as git
from .names import quote

MARKER = "mm4watch-hook"
HOOKS = ("post-commit", "post-merge", "post-rewrite")
CHAINED = ".mm4watch-chained"

# The hook itself is shell, so a commit pays for a few `git rev-parse` calls and
# nothing else: it notes what to queue in .mm4/commits.pending (durable) and
# leaves the reading of notebooks to a background `drain` (or to the daemon).
TEMPLATE = """#!/bin/sh
# {marker}: {origin}
# Queues runs of the tagged notebooks {what}. Never fails the commit, never prompts.
here=$(dirname "$0")
{read_input}if [ -x "$here/{name}{chained}" ]; then
    {feed}"$here/{name}{chained}" "$@" || true
fi
top=$(git rev-parse --show-toplevel 2>/dev/null) || exit 0
gitdir=$(git rev-parse --absolute-git-dir 2>/dev/null) || exit 0
{body}
mkdir -p "$top/.mm4" || exit 0
printf '%s\\n' "$line" >> "$top/.mm4/commits.pending" || exit 0
( cd "$top" && {drain} >/dev/null 2>&1 & ) 2>/dev/null
if [ -f "$top/.mm4/daemon.json" ]; then
    echo "mm4watch: queueing runs for the tagged notebooks of $(git rev-parse --short HEAD)" >&2
else
    echo "mm4watch: queueing runs for the tagged notebooks of $(git rev-parse --short HEAD); the daemon is not running, they wait (mm4watch start)" >&2
fi
exit 0
"""

BODIES = {
    # while a rebase or a cherry-pick sequence replays commits, queue nothing: post-rewrite queues the end state
    "post-commit": (
        "the commit changed",
        'for d in rebase-merge rebase-apply sequencer; do [ -e "$gitdir/$d" ] && exit 0; done\n'
        'line="commit $(git rev-parse HEAD)"',
    ),
    "post-merge": (
        "a merge or pull brought (merges run no post-commit)",
        'for d in rebase-merge rebase-apply sequencer; do [ -e "$gitdir/$d" ] && exit 0; done\n'
        'line="range $(git rev-parse -q --verify ORIG_HEAD) $(git rev-parse HEAD)"',
    ),
    "post-rewrite": (
        "a rebase changed, once, as they are at its end",
        '[ "$1" = rebase ] || exit 0\n'
        "first=$(printf '%s\\n' \"$input\" | awk 'NF >= 2 {print $2; exit}')\n"
        '[ -n "$first" ] || exit 0\n'
        'line="range $(git rev-parse -q --verify "$first^" || echo root) $(git rev-parse HEAD)"',
    ),
}


def script(name: str, drain: str | None = None, origin: str | None = None) -> str:
    """The hook ``name``; ``drain`` is the command that turns noted commits into queue entries."""
    if drain is None:
        # -S skips site-packages' start-up work: the drain imports only the standard library and mm4watch
        libdir = Path(mm4watch.__file__).resolve().parent.parent
        drain = f"PYTHONPATH={quote(libdir)} {quote(sys.executable)} -S -m mm4watch.hook drain"
    what, body = BODIES[name]
    takes_input = name == "post-rewrite"  # only post-rewrite gets input (the rewritten commits)
    return TEMPLATE.format(
        marker=MARKER,
        name=name,
        chained=CHAINED,
        drain=drain,
        what=what,
        body=body,
        origin=origin or "installed by `mm4watch install-hooks`; `mm4watch uninstall-hooks` restores what was here.",
        read_input="input=$(cat)\n" if takes_input else "",
        feed="printf '%s\\n' \"$input\" | " if takes_input else "</dev/null ",
    )


def repository_script(name: str) -> str:
    """The copy kept in this repository's hooks/ folder: the same hook, finding mm4watch on PATH."""
    return script(
        name,
        drain="mm4watch-hook drain",
        origin="copy to .git/hooks/ (or run `mm4watch install-hooks`, which keeps an existing hook running).",
    )


def hooks_dir(root: Path) -> Path:
    """The repository's hooks folder, respecting core.hooksPath."""
    path = Path(git(root, "rev-parse", "--git-path", "hooks").decode().strip())
    return path if path.is_absolute() else root / path


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
