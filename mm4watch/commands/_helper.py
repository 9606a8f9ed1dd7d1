"""mm4watch _helper TYPE NAME [ARGS...]: a helper process an executor type registers (its
``helpers``: name -> "module:function"), run with its own arguments; what it returns is the exit
code. The Dask executor's agent is one (``dask-agent``); a plug-in's are found the same way."""

from __future__ import annotations

import argparse


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("type", help="the executor type that registers the helper")
    parser.add_argument("helper", help="the helper's name")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the helper's own arguments")


def main(args: argparse.Namespace) -> int:
    from ..core import plugins

    return int(plugins.helper(args.type, args.helper)(list(args.args)))
