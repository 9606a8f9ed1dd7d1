"""mm4watch install-hooks: git hooks that queue the tagged notebooks each commit changes."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..triggers.hook import git
from ..triggers.hooks_install import install


def main(args: argparse.Namespace) -> int:
    root = Path(git(Path.cwd(), "rev-parse", "--show-toplevel").decode().strip())
    for line in install(root):
        print(line)
    return 0
