"""mm4watch gc [EXECUTOR] [--keep N]: remove what this project's runs left on an executor (old images)."""

from __future__ import annotations

import argparse

from .. import executors
from ..core import config


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    exec_cfg = cfg.executor(args.executor)
    for line in executors.get(exec_cfg, cfg).gc(args.keep):
        print(line)
    return 0
