"""mm4watch completion bash|zsh|fish: the shell code that completes mm4watch's commands."""

from __future__ import annotations

import argparse


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete in")


def main(args: argparse.Namespace) -> int:
    import argcomplete

    print(argcomplete.shellcode(["mm4watch"], shell=args.shell))
    return 0
