"""What the daemon decided about each save it saw, as data: ``.mm4/decisions.jsonl``.

One JSON object a line: ``{"at", "notebook", "decision", ...facts}``, where the decision is one
of ``DECISIONS``. It is how anyone (a test, an editor extension) learns that a save was seen and
why it did or did not queue a run, without waiting a guessed time for a folder not to appear.
The file is kept to about ``MAX_BYTES``; the older half moves to ``decisions.jsonl.1``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

NAME = "decisions.jsonl"
MAX_BYTES = 1 << 20
DECISIONS = (
    "queued",  # a new entry: a run will start
    "merged",  # joined an entry that answers it (the same content queued or just run)
    "unchanged",  # the code is what it was (outputs or metadata changed)
    "untagged",  # no `# mm4: remote` tag
    "remembered",  # seen at the daemon's first start: remembered, not run
    "git",  # written by git (a checkout, a pull, a stash): not a save
    "refused",  # cannot be run as saved (not a notebook, a bad tag, a full queue): said why
    "gone",  # deleted before it could be read
)


def record(state_dir: Path, notebook: str, decision: str, **facts: Any) -> None:
    path = state_dir / NAME
    line = json.dumps({"at": time.time(), "notebook": notebook, "decision": decision, **facts}) + "\n"
    try:
        if path.stat().st_size > MAX_BYTES:
            os.replace(path, path.with_name(NAME + ".1"))
    except FileNotFoundError:
        pass  # the first decision
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())  # one write: lines of two processes never interleave
    finally:
        os.close(fd)


def read(state_dir: Path) -> list[dict[str, Any]]:
    """Every decision on record, oldest first (a torn last line is left out)."""
    found = []
    for path in (state_dir / (NAME + ".1"), state_dir / NAME):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found
