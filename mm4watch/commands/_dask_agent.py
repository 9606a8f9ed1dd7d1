"""mm4watch _dask_agent ADDRESS: this machine's one Dask client for that scheduler (``remote.dask_agent``).

Started by the first mm4watch process that needs the scheduler; it ends by itself when
nobody has used it for a while. Exit 75: the scheduler did not answer (said on stderr,
which is the agent's log, for the process that started it).
"""

from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    from ..remote.dask_agent import IDLE_S, serve

    return serve(args.address, IDLE_S if args.idle is None else args.idle)
