"""The dependency base: what the big, rarely rebuilt environment layer of a run image holds.

A Dockerfile that declares ``ARG MM4_BASE_REQUIREMENTS`` (``mm4watch init`` writes one) installs
those requirements in one layer, then brings the environment to requirements.txt in the next:
a package added to requirements.txt changes a small layer on top, not the whole environment
(copied and exported again: seconds per hundred MB). mm4watch passes the base: the requirements
the newest image of the project on that engine was based on (a label on it), until
requirements.txt has moved more than ``REBASE_AFTER`` lines away from it, or holds a line that
is more than a requirement (an option, a URL, a path); then requirements.txt as it is now.

The base changes what is installed where, never what the run gets: the second layer syncs the
environment exactly to requirements.txt whatever the base holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.requirements import plain_lines

BASE_ARG = "MM4_BASE_REQUIREMENTS"
LABEL_BASE = "mm4watch.deps-base"
REBASE_AFTER = 8  # requirement lines added, removed or changed since the base before a new one


@dataclass(frozen=True)
class Base:
    text: str  # the requirement lines the base layer installs, one per line
    note: str  # for build.log


def declared(dockerfile_text: str) -> bool:
    """Whether the Dockerfile takes the base (``ARG MM4_BASE_REQUIREMENTS``)."""
    return re.search(rf"(?im)^\s*ARG\s+{BASE_ARG}\b", dockerfile_text) is not None


def choose(requirements: str, previous: str | None, where: str) -> Base:
    """The base for an image of ``requirements`` (requirements.txt's text), given the base of the
    newest image on the engine ``where`` (None: none there)."""
    now = plain_lines(requirements)
    if now is None:
        return Base("", "requirements.txt has a line that is not a plain requirement: the layer on top installs it all")
    if previous is not None:
        before = plain_lines(previous) or []
        changed = len(set(now) ^ set(before))
        if changed <= REBASE_AFTER:
            if not changed:
                return Base(previous, f"dependency base: as requirements.txt ({len(before)} lines)")
            return Base(
                previous,
                f"dependency base: the one of the newest image on {where} ({len(before)} lines); "
                f"{changed} line(s) changed since are installed on top",
            )
        why = f"{changed} lines changed since the base of the newest image on {where} (more than {REBASE_AFTER})"
    else:
        why = f"no image of the project on {where} has a base"
    return Base("\n".join(now), f"dependency base: requirements.txt as it is now ({why})")
