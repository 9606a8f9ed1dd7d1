"""mm4watch check NOTEBOOK...: notebooks parse, tags are valid, no comment is a near miss of the tag."""

from __future__ import annotations

import argparse

from ..core.errors import EXIT_NOTEBOOK_FAILED, EXIT_OK


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.description = f"{parser.description} Exit 0 when all are fine, 1 otherwise."
    parser.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="notebooks to check")
    parser.add_argument("--no-outputs", action="store_true", help="also refuse tagged notebooks that carry outputs")


def main(args: argparse.Namespace) -> int:
    from ..triggers.hook import check

    failed = check(args.notebooks, no_outputs=args.no_outputs)
    if failed:
        return EXIT_NOTEBOOK_FAILED
    print(f"ok: {len(args.notebooks)} notebook(s)")
    return EXIT_OK
