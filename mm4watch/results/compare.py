"""Two runs side by side: commits between them, parameters, metrics, outputs, source.

``compare`` gathers the differences as plain data (what ``mm4watch diff --json``
prints); ``source_diff`` renders the notebooks' code, cell by cell, with nbdime
when it is installed and a unified diff per code cell otherwise.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

from ..core import git
from ..core.errors import Mm4Error
from ..core.tags import cell_source
from . import environment
from .metrics import read_steps
from .records import EXECUTED_NAME, RunRecord

INJECTED = "injected-parameters"  # papermill's tag on the cell it adds


def compare(root: Path, a: RunRecord, b: RunRecord, a_dir: Path, b_dir: Path) -> dict[str, Any]:
    return {
        "a": _side(a, a_dir),
        "b": _side(b, b_dir),
        "commits": commits_between(root, _sha(a), _sha(b)),
        "parameters": _values(a.parameters, b.parameters, delta=False),
        "metrics": _values(a.metrics, b.metrics, delta=True),
        "outputs": _outputs(a.outputs, b.outputs),
        "environment": environment.compare(a_dir, b_dir),
        "curves": _curves(read_steps(a_dir), read_steps(b_dir)),
    }


def _curves(a: dict[str, list[list[float]]], b: dict[str, list[list[float]]]) -> dict[str, dict[str, Any]]:
    """Each metric logged by step in either run: its points in A and in B."""
    return {key: {"a": a.get(key, []), "b": b.get(key, [])} for key in sorted(set(a) | set(b))}


def _side(record: RunRecord, folder: Path) -> dict[str, Any]:
    commit = record.commit or {}
    return {
        "id": record.id,
        "folder": str(folder),
        "notebook": record.notebook,
        "status": record.status,
        "commit": commit.get("sha"),
        "dirty": bool(commit.get("dirty")),
        "started": record.started_at,
    }


def _sha(record: RunRecord) -> str | None:
    return (record.commit or {}).get("sha")


def commits_between(root: Path, a: str | None, b: str | None) -> dict[str, Any]:
    """Commits only in ``b`` (``ahead``) and only in ``a`` (``behind``), newest first, one line each."""
    if not a or not b:
        return {"note": "a run was made outside git: no commits to compare", "ahead": [], "behind": []}
    if a == b:
        return {"note": "same commit", "ahead": [], "behind": []}
    if not all(re.fullmatch(r"[0-9a-f]{7,64}", sha) for sha in (a, b)):  # a record's value is never an option
        return {"note": "a run's commit is not a commit name: no commits to compare", "ahead": [], "behind": []}
    try:
        out = git.call(root, "log", "--left-right", "--format=%m%x09%h%x09%s", "--end-of-options", f"{a}...{b}")
    except Mm4Error:
        return {"note": f"{a[:8]} or {b[:8]} is not in this repository (fetch it to see the commits)", "ahead": [], "behind": []}  # fmt: skip
    ahead: list[dict[str, str]] = []
    behind: list[dict[str, str]] = []
    for line in out.decode(errors="replace").splitlines():
        side, short, subject = (line.split("\t", 2) + ["", ""])[:3]
        (ahead if side == ">" else behind).append({"sha": short, "subject": subject})
    return {"note": "", "ahead": ahead, "behind": behind}


def _values(a: dict[str, Any], b: dict[str, Any], *, delta: bool) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(set(a) | set(b)):
        row: dict[str, Any] = {"key": key, "a": a.get(key), "b": b.get(key), "changed": a.get(key) != b.get(key)}
        if key not in a or key not in b:
            row["changed"] = True
        if delta and isinstance(a.get(key), (int, float)) and isinstance(b.get(key), (int, float)):
            row["delta"] = b[key] - a[key]
        rows.append(row)
    return rows


def _outputs(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, list[str]]:
    old = {o["path"]: o.get("sha256") for o in a}
    new = {o["path"]: o.get("sha256") for o in b}
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(p for p in set(old) & set(new) if old[p] != new[p]),
        "same": sorted(p for p in set(old) & set(new) if old[p] == new[p]),
    }


def code_of(path: Path) -> dict[str, Any] | None:
    """The notebook a run executed, reduced to its code: no outputs, no papermill parameters cell."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cells = [
        {"cell_type": c.get("cell_type", "code"), "source": cell_source(c), "metadata": {}, "outputs": [], "execution_count": None}
        if c.get("cell_type") == "code"
        else {"cell_type": c.get("cell_type", "markdown"), "source": cell_source(c), "metadata": {}}
        for c in nb.get("cells", [])
        if INJECTED not in (c.get("metadata", {}).get("tags") or [])
    ]  # fmt: skip
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def source_diff(a_dir: Path, b_dir: Path, *, use_nbdime: bool = True) -> tuple[str, str]:
    """The code that changed between two runs' notebooks, and which tool wrote it ("nbdime", "plain")."""
    a = code_of(a_dir / EXECUTED_NAME)
    b = code_of(b_dir / EXECUTED_NAME)
    if a is None or b is None:
        missing = a_dir if a is None else b_dir
        return f"(no readable {EXECUTED_NAME} in {missing}: cannot compare the source)\n", "none"
    if use_nbdime:
        try:
            return _nbdime(a, b), "nbdime"
        except ImportError:
            pass
    return _plain(a, b), "plain"


def _nbdime(a: dict[str, Any], b: dict[str, Any]) -> str:
    import io
    import types

    from ..core.lean_imports import nbformat

    nbf = nbformat()  # before nbdime, which imports it too
    import nbdime
    from nbdime.prettyprint import PrettyPrintConfig, pretty_print_diff

    nb_a, nb_b = nbf.from_dict(a), nbf.from_dict(b)
    diff = nbdime.diff_notebooks(nb_a, nb_b)
    out = io.StringIO()
    only_sources = types.SimpleNamespace(
        sources=True, outputs=False, attachments=False, metadata=False, identifiers=False, details=False
    )
    pretty_print_diff(
        nb_a, diff, "", PrettyPrintConfig(out=out, include=only_sources, use_color=False, use_git=False, use_diff=False)
    )
    return out.getvalue()


def _plain(a: dict[str, Any], b: dict[str, Any]) -> str:
    """A unified diff of each code cell, cells matched by content (insertions and deletions shown whole)."""
    old = [c["source"] for c in a["cells"] if c["cell_type"] == "code"]
    new = [c["source"] for c in b["cells"] if c["cell_type"] == "code"]
    out: list[str] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        pairs = list(zip(range(i1, i2), range(j1, j2), strict=False))
        for i, j in pairs:
            out.append(f"## code cell {i + 1} -> {j + 1}: changed\n")
            out.extend(_unified(old[i], new[j], f"a/cell {i + 1}", f"b/cell {j + 1}"))
        for i in range(i1 + len(pairs), i2):
            out.append(f"## code cell {i + 1}: deleted\n")
            out.extend(_unified(old[i], "", f"a/cell {i + 1}", "/dev/null"))
        for j in range(j1 + len(pairs), j2):
            out.append(f"## code cell {j + 1}: added\n")
            out.extend(_unified("", new[j], "/dev/null", f"b/cell {j + 1}"))
    return "".join(out)


def _unified(old: str, new: str, a: str, b: str) -> list[str]:
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), a, b, lineterm="")
    return [line + "\n" for line in lines]
