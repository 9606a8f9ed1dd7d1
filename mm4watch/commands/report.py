"""mm4watch report: write results/index.html, the page of every run."""

from __future__ import annotations

import argparse
import os
import sys

from ..core import config
from ..queue import orphans
from ..views import report

BACKGROUND_NICE = 10  # the daemon's refresh after each run: runs going on and the editor keep the CPU


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    parser.add_argument("--background", action="store_true", help=argparse.SUPPRESS)  # the daemon's: at a low priority


def main(args: argparse.Namespace) -> int:
    if args.background:
        os.nice(BACKGROUND_NICE)  # rendering a notebook (nbconvert) takes a CPU for a second or two
    cfg = config.load()
    orphans.quietly(cfg)  # a run whose process died is finished, not shown running for ever
    path = report.refresh(cfg, say=(lambda _: None) if args.quiet else (lambda line: print(line, file=sys.stderr)))
    if not args.quiet:
        print(path)
    return 0
