"""mm4watch start [--foreground]: the watch daemon for this project."""

from __future__ import annotations

import argparse
import time

from ..core import config
from ..core.errors import Mm4Error
from ..queue.active import read_info
from ..triggers.daemon import Daemon, spawn_detached

READY_S = 60  # the start-up scan reads every notebook once


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--foreground", action="store_true", help="stay in the foreground (for launchd/systemd)")


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    if args.foreground:
        return Daemon(cfg).serve()
    info = read_info(cfg.state_dir)
    if info:
        print(f"already running (pid {info.get('pid')}) for {cfg.root}")
        return 0
    child = spawn_detached(cfg)
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        info = read_info(cfg.state_dir)
        if info and info.get("pid") == child.pid and info.get("watching"):  # returns once saves are seen
            print(f"started (pid {child.pid}); log: {cfg.state_dir / 'daemon.log'}")
            return 0
        if child.poll() is not None:
            break
        time.sleep(0.05)
    raise Mm4Error(f"the daemon did not start; see {cfg.state_dir / 'daemon.log'}")
