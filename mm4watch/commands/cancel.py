"""mm4watch cancel RUN: stop a running run; what it wrote so far is kept."""

from __future__ import annotations

import argparse
import time

from ..core import config
from ..core.errors import Mm4Error, UsageError
from ..queue import active
from ..results.records import read_record
from ..results.store import History

WAIT_S = 60


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", nargs="?", help="run id, unique id prefix or notebook name")
    parser.add_argument("--sweep", metavar="ID", help="every run of this sweep that has not ended, queued or running")


def main(args: argparse.Namespace) -> int:
    cfg = config.locate()
    if args.sweep:
        return _sweep(cfg, args.sweep)
    if not args.run:
        raise UsageError("name the run to cancel (or --sweep ID)")
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


def _sweep(cfg: config.Place, sweep_id: str) -> int:
    """The sweep's queued runs removed, then its running ones asked to stop (what they wrote is kept)."""
    from ..queue import intake
    from ..queue.entries import Queue

    queue = Queue(cfg.state_dir)
    if sweep_id not in intake.sweeps(queue):
        raise UsageError(f"no sweep {sweep_id!r} in the queue (`mm4watch status` lists the sweeps under way)")
    removed = intake.remove_sweep(queue, sweep_id)
    running = [e for e in queue.entries(("claimed",)) if (e.sweep or {}).get("id") == sweep_id and e.run_id]
    asked = [e.run_id for e in running if e.run_id and active.request_cancel(cfg.state_dir, e.run_id) is not None]
    deadline = time.monotonic() + WAIT_S
    while asked and time.monotonic() < deadline and not all(read_record(cfg.results_dir / r).is_final for r in asked):
        time.sleep(0.2)
    print(f"sweep {sweep_id}: {removed} queued run(s) removed, {len(asked)} running run(s) cancelled")
    return 0
