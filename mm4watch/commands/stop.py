"""mm4watch stop [--now]: stop the daemon; it lets the current run finish unless --now."""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

from ..core import config
from ..queue.active import alive, read_info

WAIT_S = 10


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--now", action="store_true", help="cancel the run in progress (its results so far are kept)")


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
    if not args.now:
        for line in _running(cfg):
            print(f"waiting for {line}; `mm4watch stop --now` cancels it")
    deadline = time.monotonic() + (60 if args.now else WAIT_S)
    while time.monotonic() < deadline:
        if read_info(cfg.state_dir) is None:
            print(f"stopped (pid {pid})")
            return 0
        time.sleep(0.05)
    print(f"stopping (pid {pid}): it exits when the current run ends; `mm4watch stop --now` cancels it")
    return 0


def _running(cfg: config.Place) -> list[str]:
    """What the daemon waits for: "23_train (12m so far)"."""
    from ..queue.entries import Queue
    from ..views.format import duration
    from ..views.status import running_for

    found = []
    for entry in Queue(cfg.state_dir).entries(("claimed",)):
        name = Path(entry.notebook).stem
        so_far = running_for(cfg, entry)
        found.append(f"{name} ({duration(so_far)} so far)" if so_far is not None else name)
    return found
