"""mm4watch stop [--now]: stop the daemon; it lets the current run finish unless --now."""

from __future__ import annotations

import argparse
import os
import signal
import time

from .. import config
from ..active import alive, read_info

WAIT_S = 10


def main(args: argparse.Namespace) -> int:
    cfg = config.locate()
    info = read_info(cfg.state_dir)
    if not info or not info.get("pid"):
        print("not running")
        return 0
    pid = int(info["pid"])
    if info.get("pid_started") is not None and not alive(pid, info["pid_started"]):
        print("not running")  # the lock says a daemon runs, yet that pid is another process now
        return 0
    try:
        os.kill(pid, signal.SIGUSR1 if args.now else signal.SIGTERM)
    except ProcessLookupError:
        print("not running")
        return 0
    deadline = time.monotonic() + (60 if args.now else WAIT_S)
    while time.monotonic() < deadline:
        if read_info(cfg.state_dir) is None:
            print(f"stopped (pid {pid})")
            return 0
        time.sleep(0.05)
    print(f"stopping (pid {pid}): it exits when the current run ends; `mm4watch stop --now` cancels it")
    return 0
