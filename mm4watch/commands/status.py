"""mm4watch status: the daemon, what runs and for how long, what waits and why (``views.status``)."""

from __future__ import annotations

import argparse

from ..core import config
from ..queue import orphans
from ..views import status


def main(args: argparse.Namespace) -> int:
    place = config.locate()
    orphans.quietly(place)  # a run whose process died is finished, not shown running for ever
    print("\n".join(status.lines(status.snapshot(place))))
    return 0
