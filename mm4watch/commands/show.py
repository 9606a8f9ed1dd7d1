"""mm4watch show RUN: one run's record, readable or as JSON."""

from __future__ import annotations

import argparse
import json

from ..core import config
from ..queue import orphans
from ..results.store import History
from ..views.show import lines


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run", metavar="RUN", help="run id, unique id prefix, notebook name (its latest run) or run folder"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print run.json as it is, and its curves as steps: {metric: [[step, value]]}",
    )


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    orphans.quietly(cfg)  # a run whose process died is finished, not shown running for ever
    record, run_dir = History(cfg.results_dir, cfg.state_dir).find(args.run)
    if args.json:
        from ..results.metrics import read_steps

        print(json.dumps({**record.to_dict(), "steps": read_steps(run_dir)}, indent=2))
        return 0
    print("\n".join(lines(record, run_dir)))
    return 0
