"""mm4watch uninstall-hooks: remove mm4watch's git hooks and restore what was there."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..triggers.hook import git
from ..triggers.hooks_install import uninstall


def main(args: argparse.Namespace) -> int:
    root = Path(git(Path.cwd(), "rev-parse", "--show-toplevel").decode().strip())
    for line in uninstall(root):
        print(line)
    return 0
