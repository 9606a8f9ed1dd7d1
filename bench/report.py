"""`mm4watch report` on 10,000 runs with metrics (target: a refresh after a run under 2 s).

A refresh after a run writes the page anew from the history index (the new run
listed, linked to its executed.html), then renders that executed.html (nbconvert).
Both moments are timed. Baseline, measured in the same run: rendering one
notebook with `jupyter nbconvert --to html` by hand, the part a refresh cannot skip.
Prints medians and ratios.
Usage: python bench/report.py [--runs 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, command, notebook, report, timed  # noqa: E402
from history import populate  # noqa: E402

from mm4watch.results.records import EXECUTED_NAME, HTML_NAME, RunRecord, write_record  # noqa: E402
from mm4watch.results.store import create_run_dir  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        populate(root, args.runs)
        sample = root / "sample.ipynb"
        sample.write_text(notebook("print('hello')\nx = 1"))
        mm4 = [sys.executable, "-m", "mm4watch", "report", "--quiet"]
        cold = timed(command(mm4, cwd=root))
        page = root / "results" / "index.html"
        counter = iter(range(1_000_000))

        def new_run() -> None:
            # a run that just ended: a folder with its executed notebook and no executed.html yet
            when = datetime(2027, 1, 1) + timedelta(minutes=next(counter))
            run_id, run_dir = create_run_dir(root / "results", "fresh", when)
            shutil.copyfile(sample, run_dir / EXECUTED_NAME)
            iso = when.astimezone().isoformat()
            write_record(
                run_dir,
                RunRecord(run_id, "notebooks/fresh.ipynb", "succeeded", "save", iso, metrics={"acc": 0.9}),
            )

        page_times: list[float] = []

        def refresh_after_a_run() -> None:
            new_run()
            before = page.stat().st_mtime_ns
            t0 = time.perf_counter()
            child = subprocess.Popen(mm4, cwd=root)
            while page.stat().st_mtime_ns == before and child.poll() is None:
                time.sleep(0.005)
            page_times.append(time.perf_counter() - t0)
            child.wait()

        medians = alternate(
            {
                "baseline: jupyter nbconvert one notebook": command(
                    [
                        sys.executable,
                        "-m",
                        "jupyter",
                        "nbconvert",
                        "--to",
                        "html",
                        "--output-dir",
                        tmp,
                        "--output",
                        "by-hand",
                        str(sample),
                    ]
                ),
                "refresh after a run (+ its html)": refresh_after_a_run,
                "report refresh, nothing new": command(mm4, cwd=root),
                "bare python start": command([sys.executable, "-c", "pass"]),
            },
            args.rounds,
        )
        report(
            f"report on {args.runs} runs with metrics (median of {args.rounds}, alternating)",
            medians,
            "baseline: jupyter nbconvert one notebook",
        )
        fresh = sorted(p for p in (root / "results").glob("fresh_*"))
        assert all((p / HTML_NAME).is_file() for p in fresh), "a new run was not rendered"
        assert f'data-run="{fresh[-1].name}"' in page.read_text(), "the page does not list the newest run"
        print(
            f"  first report, index built from nothing: {cold * 1000:.0f} ms; page {page.stat().st_size / 1e6:.1f} MB"
        )
        listed = statistics.median(page_times)
        whole = medians["refresh after a run (+ its html)"]
        print(
            f"  page current (lists the new run) after {listed * 1000:.0f} ms; its executed.html after {whole * 1000:.0f} ms"
        )
        verdict = "MET" if listed < 2 else "NOT MET"
        print(f"  page refresh on {args.runs} runs: {listed * 1000:.0f} ms (target: under 2 s) -> {verdict}")
        return 0 if listed < 2 else 1


if __name__ == "__main__":
    sys.exit(main())
