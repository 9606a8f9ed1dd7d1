"""mm4watch open [RUN]: a run's executed notebook, or the report, in the browser."""

from __future__ import annotations

import argparse
import webbrowser

from ..core import config
from ..core.errors import UsageError
from ..results.records import EXECUTED_NAME, HTML_NAME
from ..results.store import History
from ..views import report


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run", nargs="?", metavar="RUN", help="run id, unique id prefix or notebook name; none: the report"
    )


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    if args.run:
        record, run_dir = History(cfg.results_dir, cfg.state_dir).find(args.run)
        path = run_dir / HTML_NAME
        if not path.exists():
            if not (run_dir / EXECUTED_NAME).is_file():
                raise UsageError(f"run {record.id} has no {EXECUTED_NAME} yet (status {record.status}); see {run_dir}")
            path = report.render_html(run_dir)
    else:
        path = report.refresh(cfg)
    print(path)
    if not webbrowser.open(path.resolve().as_uri()):
        print("no browser found here: open the file above (set BROWSER to choose one)")
    return 0
