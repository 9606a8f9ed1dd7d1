"""mm4watch gc [EXECUTOR] [--keep N]: remove this project's old images on an engine."""

from __future__ import annotations

import argparse

from ..core import config
from ..core.config import DockerConfig
from ..remote.docker_engine import Engine


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    exec_cfg = cfg.executor(args.executor)
    if not isinstance(exec_cfg, DockerConfig):
        print(f"executor {exec_cfg.name!r} is {exec_cfg.type}: it keeps no images; nothing to do")
        return 0
    keep = args.keep or exec_cfg.keep_images
    with Engine(exec_cfg) as engine:
        removed = engine.gc(cfg.image_name, keep)
    for tag in removed:
        print(f"removed {tag}")
    print(f"kept the newest {keep} image(s) of {cfg.image_name} on {exec_cfg.name}; removed {len(removed)}")
    return 0
