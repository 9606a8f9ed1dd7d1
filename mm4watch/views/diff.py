"""``mm4watch diff`` as lines: two runs side by side, the commits between them, parameters and
metrics with their deltas, outputs, and which tool made the code's diff."""

from __future__ import annotations

from typing import Any

from . import format


def lines(found: dict[str, Any], tool: str, text: str) -> list[str]:
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
    out.extend(_curves(found.get("curves") or {}))
    out.extend(_packages(found.get("environment")))
    out.append("")
    out.append(f"source ({tool})" + ("" if text.strip() else ": the same code"))
    return out


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


def _packages(env: dict[str, Any] | None) -> list[str]:
    """The packages the kernels ran with: what B added, removed and changed since A."""
    if not env:
        return []
    python = env.get("python") or ["", ""]
    versions = f" (python {python[0]} -> {python[1]})" if python[0] != python[1] else ""
    out = ["", "packages" + (f": {env['note']}" if env["note"] else "") + versions]
    out.extend(f"  + {name}=={version}  (added)" for name, version in env["added"])
    out.extend(f"  - {name}=={version}  (removed)" for name, version in env["removed"])
    out.extend(f"  ~ {name} {a} -> {b}  (changed)" for name, a, b in env["changed"])
    return out


def _curves(curves: dict[str, dict[str, Any]]) -> list[str]:
    """Each curve of A and B as sparklines on one scale, with its last value and points."""
    if not curves:
        return []
    out = ["", "curves (by step; A and B on one scale)"]
    width = max(len(key) for key in curves)
    for key, sides in curves.items():
        values = {side: [v for _, v in sides[side]] for side in ("a", "b")}
        every = values["a"] + values["b"]
        lo, hi = min(every), max(every)
        for side in ("a", "b"):
            got = values[side]
            line = format.sparkline(got, lo=lo, hi=hi) if got else "-"
            last = f"  {format.value(got[-1])} at step {sides[side][-1][0]} ({len(got)} points)" if got else ""
            out.append(f"  {key if side == 'a' else '':<{width}}  {side.upper()} {line}{last}")
    return out
