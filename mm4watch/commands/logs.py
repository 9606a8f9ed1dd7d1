"""mm4watch logs [-f] RUN: a run's log; -f follows it until the run ends."""

from __future__ import annotations

import argparse
import sys
import time

from ..core import config
from ..results.records import LOG_NAME, read_record
from ..results.store import History

POLL_S = 0.25


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run", metavar="RUN", help="run id, unique id prefix, notebook name (its latest run) or run folder"
    )
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")


def main(args: argparse.Namespace) -> int:
    cfg = config.locate()
    record, run_dir = History(cfg.results_dir, cfg.state_dir).find(args.run)
    path = run_dir / LOG_NAME
    position = 0
    while True:
        if path.exists():
            with open(path, "rb") as fh:
                fh.seek(position)
                chunk = fh.read()
                position += len(chunk)
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
        if not args.follow or read_record(run_dir).is_final:
            if args.follow and path.exists() and path.stat().st_size > position:
                continue  # the last lines arrived with the final record
            return 0
        time.sleep(POLL_S)
