"""Every project's copy of earlier results on a machine (under ``<workdir>``): listed with its size
and whose it is, for ``doctor`` and ``gc``; copies of this project left under another key (its
folder moved, an older key) found to be removed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..core.config import Config
from ..core.names import quote
from .mirror import INDEX, project_of


@dataclass(frozen=True)
class Copy:
    """One project's copy of earlier results on a machine (``copies``)."""

    folder: str  # under the base, e.g. "myproj-1a2b3c4d/results"
    bytes: int
    project: dict[str, Any]  # root, name, first_commit (from its index; empty when it has none)


def copies(target: Any, base: str) -> tuple[list[Copy], int]:
    """Every project's copy under ``base`` there, and the bytes free on that disk."""
    from . import ssh

    out = ssh.run(
        target,
        f"mkdir -p {quote(base)} && cd {quote(base)} && df -Pk . | tail -1 && "
        f'for d in */results; do [ -d "$d" ] || continue; printf \'@@%s\\t\' "$d"; '
        f"du -sk \"$d\" | cut -f1 | tr -d '\\n'; printf '\\t'; "
        f"head -c 4096 \"$d/{INDEX}\" 2>/dev/null | tr '\\n' ' '; printf '\\n'; done",
        timeout=300,
    ).stdout.decode("utf-8", "surrogateescape")
    df, _, rest = out.partition("\n")
    fields = df.split()
    free = int(fields[3]) * 1024 if len(fields) > 3 and fields[3].isdigit() else 0
    found = []
    for line in rest.split("@@")[1:]:
        folder, _, tail = line.partition("\t")
        kb, _, head = tail.partition("\t")
        project: dict[str, Any] = {}
        start = head.find('"project":')
        if start >= 0:
            try:
                value, _ = json.JSONDecoder().raw_decode(head[start + len('"project":') :].lstrip())
                project = value if isinstance(value, dict) else {}
            except ValueError:
                project = {}
        found.append(Copy(folder, int(kb) * 1024 if kb.strip().isdigit() else 0, project))
    return found, free


def others_of(cfg: Config, found: list[Copy]) -> list[Copy]:
    """Copies of this project left under another key: its folder moved or renamed (the same first
    commit), or the same path under a key an older mm4watch made."""
    mine = f"{cfg.project_key}/results"
    first = project_of(cfg)["first_commit"]
    return [
        c
        for c in found
        if c.folder != mine
        and (c.project.get("root") == str(cfg.root) or (first is not None and c.project.get("first_commit") == first))
    ]
