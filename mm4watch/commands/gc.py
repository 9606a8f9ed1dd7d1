"""mm4watch gc [EXECUTOR] [--keep N]: remove what this project's runs left on an executor (old images)."""

from __future__ import annotations

import argparse

from .. import executors
from ..core import config


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("executor", nargs="?", metavar="EXECUTOR", help="executor name (default: as for run)")
    parser.add_argument(
        "--keep",
        type=int,
        metavar="N",
        help="how many to keep (default: keep_images, or keep_environments for native and dask; 3)",
    )


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    exec_cfg = cfg.executor(args.executor)
    for line in executors.get(exec_cfg, cfg).gc(args.keep):
        print(line)
    return 0
