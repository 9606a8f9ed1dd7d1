"""mm4watch fetch RUN: bring home the files a run left on its machine.

A run whose Mini answered again only after the run's timeout, or whose results found no room on this
machine, keeps its container or folder there (its record's ``error.kept`` says which); once the Mini
answers and there is room here, this brings them into the run's folder and records them.
"""

from __future__ import annotations

import argparse

from ..core import config
from ..core.errors import EXIT_OK, Mm4Error
from ..queue import active
from ..results.records import read_record
from ..results.store import History
from ..run.pipeline import fetch_kept


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run id, unique id prefix or notebook name (its latest run)")


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    history = History(cfg.results_dir, cfg.state_dir)
    _, run_dir = history.find(args.run)
    with active.owning(cfg.state_dir, run_dir.name, wait=False) as mine:
        if not mine:
            raise Mm4Error(f"run {run_dir.name} is being run or finished by another mm4watch process; try again after")
        record = fetch_kept(cfg, run_dir, read_record(run_dir))
    history.refresh(record.id)
    print(f"{record.id}: {len(record.outputs)} file(s) home, {record.status}")
    print(run_dir)
    return EXIT_OK
