"""mm4watch diff RUN_A RUN_B: what changed between two runs."""

from __future__ import annotations

import argparse
import json

from ..core import config
from ..results.compare import compare, source_diff
from ..results.store import History
from ..views.diff import lines


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_a", metavar="RUN_A", help="run id, unique id prefix, notebook name (its latest run) or folder"
    )
    parser.add_argument("run_b", metavar="RUN_B", help="the run to compare with RUN_A (deltas are B - A)")
    parser.add_argument(
        "--plain", action="store_true", help="a per-cell unified diff of the code even when nbdime is installed"
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    history = History(cfg.results_dir, cfg.state_dir)
    a, a_dir = history.find(args.run_a)
    b, b_dir = history.find(args.run_b)
    found = compare(cfg.root, a, b, a_dir, b_dir)
    text, tool = source_diff(a_dir, b_dir, use_nbdime=not args.plain)
    if args.json:
        print(json.dumps({**found, "source": {"tool": tool, "diff": text}}, indent=2))
        return 0
    print("\n".join(lines(found, tool, text)))
    if text.strip():
        print(text.rstrip("\n"))
    return 0
