"""mm4watch diff RUN_A RUN_B: what changed between two runs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..core import config
from ..results.compare import compare, source_diff
from ..results.store import History
from ..views import format


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
    out: list[str] = []
    for side in ("a", "b"):
        s = found[side]
        sha = (format.sha(s["commit"]) or "-") + ("*" if s["dirty"] else "")
        out.append(f"{side.upper()}: {s['id']}  {s['status']}  commit {sha}  {s['notebook']}")
    commits = found["commits"]
    out.append("")
    out.append("commits" + (f": {commits['note']}" if commits["note"] else ""))
    for c in commits["ahead"]:
        out.append(f"  + {c['sha']} {c['subject']}")
    for c in commits["behind"]:
        out.append(f"  - {c['sha']} {c['subject']}  (only in A)")
    out.extend(_table("parameters", found["parameters"]))
    out.extend(_table("metrics", found["metrics"]))
    outputs = found["outputs"]
    out.append("")
    out.append(f"outputs ({len(outputs['same'])} unchanged)")
    for kind, mark in (("added", "+"), ("removed", "-"), ("changed", "~")):
        out.extend(f"  {mark} {path}  ({kind})" for path in outputs[kind])
    out.append("")
    out.append(f"source ({tool})" + ("" if text.strip() else ": the same code"))
    print("\n".join(out))
    if text.strip():
        print(text.rstrip("\n"))
    return 0


def _table(title: str, rows: list[dict[str, Any]]) -> list[str]:
    lines = ["", title + ("" if rows else ": none")]
    if not rows:
        return lines
    cells = [
        [
            r["key"],
            "" if r["a"] is None else format.value(r["a"]),
            "" if r["b"] is None else format.value(r["b"]),
            _delta(r) if r["changed"] else "=",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(["", "A", "B", ""])]
    for c in [["", "A", "B", ""], *cells]:
        lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    return lines


def _delta(row: dict[str, Any]) -> str:
    if "delta" not in row:
        return (
            "changed" if row["a"] is not None and row["b"] is not None else ("added" if row["a"] is None else "removed")
        )
    d = row["delta"]
    pct = f" ({d / row['a'] * 100:+.1f}%)" if row["a"] else ""
    return f"{d:+.6g}{pct}"
