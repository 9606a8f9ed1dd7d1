"""mm4watch _dask_agent ADDRESS [--tls-ca F --tls-cert F --tls-key F]: this machine's one Dask client for that scheduler (``remote.dask_agent``).

Started by the first mm4watch process that needs the scheduler; it ends by itself when
nobody has used it for a while. Exit 75: the scheduler did not answer (said on stderr,
which is the agent's log, for the process that started it).
"""

from __future__ import annotations

import argparse


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address")
    parser.add_argument("--idle", type=float, default=None, help="end after this many seconds with nobody connected")
    for name in ("ca", "cert", "key"):
        parser.add_argument(f"--tls-{name}", metavar="FILE", help=f"this machine's TLS {name} for a tls:// scheduler")


def main(args: argparse.Namespace) -> int:
    from ..remote.dask_agent import IDLE_S, serve
    from ..remote.dask_pool import Tls

    tls = Tls(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca and args.tls_cert and args.tls_key else None
    return serve(args.address, IDLE_S if args.idle is None else args.idle, tls)
