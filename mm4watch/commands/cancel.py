"""mm4watch cancel RUN: stop a running run; what it wrote so far is kept."""

from __future__ import annotations

import argparse
import time

from ..core import config
from ..core.errors import Mm4Error
from ..queue import active
from ..results.records import read_record
from ..results.store import History

WAIT_S = 60


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run id, unique id prefix or notebook name")


def main(args: argparse.Namespace) -> int:
    cfg = config.locate()
    record, run_dir = History(cfg.results_dir, cfg.state_dir).find(args.run)
    if record.is_final:
        print(f"{record.id} already ended: {record.status}")
        return 0
    pid = active.request_cancel(cfg.state_dir, record.id)
    if pid is None:
        raise Mm4Error(
            f"{record.id} is marked {record.status}, but no mm4watch process on this machine runs it "
            "(it was killed?). Its folder keeps what arrived."
        )
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        current = read_record(run_dir)
        if current.is_final:
            print(f"{record.id}: {current.status}; results kept in {run_dir}")
            return 0
        time.sleep(0.2)
    raise Mm4Error(f"asked process {pid} to stop {record.id}, but it has not finished within {WAIT_S}s")
