"""requirements.txt read as lines: what the dependency caches on the Mini may reuse."""

from __future__ import annotations

import re
from pathlib import Path


def plain_lines(text: str) -> list[str] | None:
    """The requirement lines of ``text`` (comments and blanks dropped), or None when one is more
    than a name, extras, markers and a version: an option (``-r``, ``-e``, ``--index-url``), a URL,
    a path. Only plain lines can be installed apart from the file they came from."""
    found = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-") or "://" in line or "@" in line or "/" in line:
            return None
        found.append(line)
    return found


def names(path: Path) -> set[str]:
    """The package names ``path`` asks for, normalised (``scikit_learn`` -> ``scikit-learn``); none when unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    found = set()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)", line) if not line.startswith("-") else None
        if match:
            found.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return found
