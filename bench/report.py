"""`mm4watch report` on 10,000 runs with metrics (target: a refresh after a run under 2 s); with
``--curves N``, N of them also logged curves (100 steps of loss and acc, metrics.jsonl), which the
page draws for each notebook's latest runs.

A refresh after a run writes the page anew from the history index (the new run
listed, linked to its executed.html), then renders that executed.html (nbconvert).
Both moments are timed. Baseline, measured in the same run: rendering one
notebook with `jupyter nbconvert --to html` by hand, the part a refresh cannot skip.
Prints medians and ratios.
Usage: python bench/report.py [--runs 10000] [--rounds 5] [--curves 1000]
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


def with_curves(results: Path, count: int) -> None:
    """``count`` of the runs given curves: 100 steps of loss and acc in metrics.jsonl."""
    import json

    from mm4watch.results.metrics import STEPS_NAME
    from mm4watch.results.records import read_record

    for run_dir in sorted(results.iterdir())[-count:] if count else []:
        lines = [json.dumps({"step": s, "loss": 1 / (1 + s), "acc": s / 100}) for s in range(100)]
        (run_dir / STEPS_NAME).write_text("\n".join(lines) + "\n")
        write_record(run_dir, read_record(run_dir).evolve(curves={"loss": 100, "acc": 100}))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--curves", type=int, default=0, metavar="N", help="N of the runs have curves")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        populate(root, args.runs)
        with_curves(root / "results", args.curves)
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
        if args.curves:
            drawn = page.read_text().count('<polyline class="curve"')
            print(
                f"  {args.curves} runs with curves of 100 steps; the page draws {drawn} of them (each notebook's latest)"
            )
        verdict = "MET" if listed < 2 else "NOT MET"
        print(f"  page refresh on {args.runs} runs: {listed * 1000:.0f} ms (target: under 2 s) -> {verdict}")
        return 0 if listed < 2 else 1


if __name__ == "__main__":
    sys.exit(main())
