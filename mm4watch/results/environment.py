"""What a run's kernel ran with (``environment.txt`` in its folder, written by ``far.environment``):
read as packages and a summary for ``run.json``, and two runs' packages compared (``diff``)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from .records import ENVIRONMENT_NAME as NAME

_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")  # PEP 508's
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")  # PEP 440's characters (local versions too)


def read(folder: Path) -> tuple[dict[str, str], dict[str, str]] | None:
    """The header (``python``, ``platform``, ``torch``) and the packages (name -> version) of the
    environment.txt in ``folder``; None when there is none."""
    try:
        text = (folder / NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    header: dict[str, str] = {}
    packages: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# "):
            key, _, value = line[2:].partition(" ")
            header[key] = value
        elif "==" in line:
            name, _, version = (part.strip() for part in line.partition("=="))
            # written on the machine that ran the notebook: only what a package's name and version can be
            # is taken (a line that would be a pip option, "--index-url=...", is not a package)
            if _NAME.fullmatch(name) and _VERSION.fullmatch(version):
                packages[name] = version
    return header, packages


def summary(folder: Path) -> dict[str, Any] | None:
    """What run.json says of it: the file's hash, how many packages, the interpreter's version, and
    where torch is there, its line (version, MPS)."""
    try:
        data = (folder / NAME).read_bytes()
    except OSError:
        return None
    found = read(folder)
    assert found is not None
    header, packages = found
    said: dict[str, Any] = {
        "hash": hashlib.sha256(data).hexdigest()[:16],
        "packages": len(packages),
        "python": header.get("python", "").split(" ")[0] or None,
    }
    if "torch" in header:
        said["torch"] = header["torch"]
    return said


def compare(a: Path, b: Path) -> dict[str, Any]:
    """Packages added, removed and changed (name, A's version, B's) from run A's folder to B's."""
    found_a, found_b = read(a), read(b)
    if found_a is None or found_b is None:
        missing = [side for side, found in (("A", found_a), ("B", found_b)) if found is None]
        return {"note": f"no {NAME} in run {' and '.join(missing)}", "added": [], "removed": [], "changed": []}
    pa, pb = found_a[1], found_b[1]
    return {
        "note": "same packages" if pa == pb else "",
        "python": [found_a[0].get("python", "").split(" ")[0], found_b[0].get("python", "").split(" ")[0]],
        "added": [[name, pb[name]] for name in sorted(set(pb) - set(pa))],
        "removed": [[name, pa[name]] for name in sorted(set(pa) - set(pb))],
        "changed": [[name, pa[name], pb[name]] for name in sorted(set(pa) & set(pb)) if pa[name] != pb[name]],
    }
