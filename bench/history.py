"""`mm4watch history` on 10,000 run folders with parameters and metrics (target: under 300 ms).

Baseline, measured in the same run: a Python process that reads every run.json
(what history would cost without its index). Prints medians and ratios.
Usage: python bench/history.py [--runs 10000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, command, report, timed  # noqa: E402

from mm4watch.results.records import RunRecord, write_record  # noqa: E402
from mm4watch.results.store import create_run_dir  # noqa: E402

SCAN = (
    "import json, os, sys; d = sys.argv[1]; "
    "rs = [json.load(open(os.path.join(d, n, 'run.json'))) for n in os.listdir(d) if os.path.isdir(os.path.join(d, n))]; "
    "rs.sort(key=lambda r: r['queued_at'], reverse=True); print(len(rs))"
)


def populate(root: Path, n: int) -> None:
    (root / "mm4.toml").write_text("[run]\n")
    start = datetime(2026, 1, 1)
    for i in range(n):
        when = start + timedelta(minutes=i)
        stem = f"nb{i % 40:02d}"
        run_id, run_dir = create_run_dir(root / "results", stem, when)
        write_record(
            run_dir,
            RunRecord(
                id=run_id,
                notebook=f"notebooks/{stem}.ipynb",
                status="succeeded",
                trigger="save",
                queued_at=when.astimezone().isoformat(),
                started_at=when.astimezone().isoformat(),
                duration_s=12.0,
                commit={"sha": "f" * 40, "branch": "main", "dirty": False},
                executor={"name": "mini", "type": "docker", "host": "mini", "arch": "arm64"},
                outputs=[{"path": "metrics.json", "size": 100, "sha256": "0" * 64}],
                parameters={"epochs": 5 + i % 7, "lr": 0.1, "model": f"m{i % 3}"},
                metrics={
                    "acc": round(0.5 + (i * 7919 % 1000) / 2000, 4),
                    "loss": round(1 / (1 + i % 50), 4),
                    "eval.f1": 0.8,
                },
            ),
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        populate(root, args.runs)
        history = [sys.executable, "-m", "mm4watch", "history"]
        cold = timed(command(history, cwd=root))
        medians = alternate(
            {
                "baseline: python reads every run.json": command([sys.executable, "-c", SCAN, str(root / "results")]),
                "mm4watch history (table, 20 rows)": command(history, cwd=root),
                "mm4watch history --json --limit 20": command([*history, "--json"], cwd=root),
                "mm4watch history --notebook nb07": command([*history, "--notebook", "nb07"], cwd=root),
                "mm4watch history --sort -acc": command([*history, "--sort", "-acc"], cwd=root),
                "history --sort loss --columns": command(
                    [*history, "--sort", "loss", "--columns", "loss,epochs"], cwd=root
                ),
                "bare python start": command([sys.executable, "-c", "pass"]),
            },
            args.rounds,
        )
        report(
            f"history on {args.runs} run folders (median of {args.rounds}, alternating)",
            medians,
            "baseline: python reads every run.json",
        )
        print(f"  first query, building the index from nothing: {cold * 1000:.0f} ms")
        worst = max(v for k, v in medians.items() if k.startswith("mm4watch"))
        print(
            f"  slowest mm4watch query: {worst * 1000:.0f} ms (target: under 300 ms) -> {'MET' if worst < 0.3 else 'NOT MET'}"
        )
        return 0 if worst < 0.3 else 1


if __name__ == "__main__":
    sys.exit(main())
