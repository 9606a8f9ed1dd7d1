"""mm4watch rerun RUN: execute a past run's exact input again.

The notebook is rebuilt from the run's commit plus its saved ``source.patch``
and checked against the recorded sha256; the parameters and executor are the
same, and container executors use the run's image when the engine still has it.
"""

from __future__ import annotations

import argparse
import sys

from ..core import config
from ..core.errors import EXIT_NOTEBOOK_FAILED, EXIT_OK
from ..results.store import History
from ..run.again import request
from ..run.pipeline import run_notebook


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run id, unique id prefix or notebook name (its latest run)")
    parser.add_argument(
        "--same-environment",
        action="store_true",
        help="build the environment again from the run's environment.txt (every package at its version), "
        "when the image or the venv it ran in is gone",
    )


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    record, run_dir = History(cfg.results_dir, cfg.state_dir).find(args.run)
    new, new_dir = run_notebook(
        cfg, request(cfg, record, run_dir, same_environment=args.same_environment),
        say=lambda line: print(line, file=sys.stderr),
    )  # fmt: skip
    print(new_dir)
    return EXIT_OK if new.status == "succeeded" else EXIT_NOTEBOOK_FAILED
