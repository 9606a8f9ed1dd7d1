"""mm4watch doctor [EXECUTOR]: check, step by step, that an executor can run notebooks.

Each check prints ok or FAIL with what to do; later checks that depend on a
failed one are skipped. The checks are the executor's own (``Executor.doctor``).
Exit 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse

from .. import executors
from ..core import config
from ..core.errors import EXIT_NOTEBOOK_FAILED, EXIT_OK
from ..executors.upkeep import Checkup


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.description = f"{parser.description} Exit 0 when all checks pass, 1 otherwise."
    parser.add_argument("executor", nargs="?", metavar="EXECUTOR", help="executor name (default: as for run)")


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    exec_cfg = cfg.executor(args.executor)
    print(f"executor {exec_cfg.name} ({exec_cfg.type})" + (f" from {cfg.file}" if cfg.file else " (defaults)"))
    report = Checkup()
    executors.get(exec_cfg, cfg).doctor(report)
    return EXIT_OK if report.failed == 0 else EXIT_NOTEBOOK_FAILED
