"""requirements.txt read as lines: what the dependency caches on the Mini may reuse."""

from __future__ import annotations


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
