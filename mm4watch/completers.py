"""Shell completion (argcomplete): notebooks, run ids and executor names.

Loaded only when the shell asks for completions, never on a normal start.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def notebooks(prefix: str, **_: Any) -> list[str]:
    folder = prefix[: prefix.rfind("/") + 1]  # what the user typed up to the last slash, as typed
    try:
        found = list(Path(folder or ".").iterdir())
    except OSError:
        return []
    names = [folder + p.name + ("/" if p.is_dir() else "") for p in found
             if p.suffix == ".ipynb" or (p.is_dir() and not p.name.startswith("."))]  # fmt: skip
    return sorted(n for n in names if n.startswith(prefix))


def run_ids(prefix: str, **_: Any) -> list[str]:
    from .core import config

    try:
        results = config.locate().results_dir
        return sorted(p.name for p in results.iterdir() if p.is_dir() and p.name.startswith(prefix))
    except OSError:
        return []


def executors(prefix: str, **_: Any) -> list[str]:
    from .core import config
    from .core.errors import Mm4Error

    try:
        return sorted(name for name in config.load().executors if name.startswith(prefix))
    except Mm4Error:
        return []


BY_DEST = {"notebook": notebooks, "run": run_ids, "run_a": run_ids, "run_b": run_ids, "executor": executors}


def attach(parser: argparse.ArgumentParser) -> None:
    """Give every argument named notebook, run or executor its completer, in every subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                attach(sub)
        elif action.dest in BY_DEST:
            action.completer = BY_DEST[action.dest]  # type: ignore[attr-defined]
