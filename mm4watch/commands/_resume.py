"""mm4watch _resume RUN: finish a run whose mm4watch process died (started by ``orphans.adopt``)."""

from __future__ import annotations

import argparse

from ..core import config
from ..core.errors import EXIT_OK
from ..queue import active
from ..results.records import read_record
from ..results.store import History
from ..run.pipeline import resume


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run")


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    _, run_dir = History(cfg.results_dir, cfg.state_dir).find(args.run)
    with active.owning(cfg.state_dir, run_dir.name, wait=False) as mine:
        if not mine:
            return EXIT_OK  # another process runs it or finishes it already
        record = read_record(run_dir)
        if not record.is_final:
            record = resume(cfg, run_dir, record)
            print(f"mm4watch: {record.id}: {record.status} (picked up after its process died)")
    return EXIT_OK
