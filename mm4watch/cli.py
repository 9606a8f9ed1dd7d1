"""Command line: parse, dispatch, map errors to the exit-code table.

Kept light: each command's module is imported only when that command runs,
so ``mm4watch --help`` and the git hook start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__
from .core.errors import EXIT_INTERRUPTED, EXIT_UNEXPECTED, EXIT_USAGE, Mm4Error, exit_table_text

COMMANDS = {
    "run": "execute a notebook now and keep its result folder",
    "sweep": "queue a grid of parameter sets as runs of one sweep (-p lr=0.1,0.01 -p depth=3,5)",
    "history": "list past runs, newest first",
    "show": "show one run's record",
    "diff": "compare two runs: commits between them, parameters, metrics, outputs, code",
    "report": "write results/index.html: every run, metric charts, images; opens from disk",
    "open": "open a run's executed notebook (or the report) in the browser",
    "start": "start the watch daemon: saving a tagged notebook queues a run",
    "stop": "stop the daemon (it lets the current run finish unless --now)",
    "status": "the daemon, the run in progress and for how long, what waits and why",
    "queue": "list, remove, retry or clear the runs waiting to start",
    "service": "start the daemon at login (launchd on macOS, systemd --user on Linux)",
    "install-hooks": "install git hooks: each commit queues the tagged notebooks it changed",
    "uninstall-hooks": "remove mm4watch's git hooks and restore what was there",
    "rerun": "run a past run's exact input again: its commit's notebook, its patch, its parameters",
    "fetch": "bring home the files a run left on its machine (its Mini came back late, or this disk was full)",
    "logs": "print a run's log; -f follows it until the run ends",
    "cancel": "stop a running run (what it wrote so far is kept)",
    "doctor": "check that an executor can run notebooks, and say how to fix what cannot",
    "gc": "remove this project's old images on an engine, keeping the newest",
    "pool": "pool certs FOLDER: the certificates a Dask pool runs with over TLS; pool worker: a Mini's worker for launchd",
    "init": "set up mm4watch in this project (never overwrites)",
    "check": "check notebooks: they parse, their tags are valid, no comment is a near miss of the tag",
    "completion": 'print the shell completion script: eval "$(mm4watch completion bash)"',
}


class _Parser(argparse.ArgumentParser):
    """argparse, with hidden commands kept out of its messages and a guess at what was meant."""

    def error(self, message: str) -> NoReturn:
        if "invalid choice" in message:
            import difflib
            import re

            message = re.sub(r", '_[a-z_]+'|'_[a-z_]+', ", "", message)
            wrong = re.search(r"invalid choice: '([^']*)'", message)
            if wrong:
                close = difflib.get_close_matches(wrong.group(1), list(COMMANDS), n=1)
                if close:
                    message += f"; did you mean {close[0]!r}?"
        super().error(message)


HIDDEN = ("_exec", "_resume", "_helper")  # the daemon's and the executors' own: they parse, listed nowhere


def build_parser(command: str | None = None, every: bool = False) -> argparse.ArgumentParser:
    """The parser: every command by its name and summary; options only for ``command`` (or, with
    ``every``, for all), each declared by its own module's ``add_options(parser)`` and imported only
    then, so ``mm4watch --help`` and the git hook start without loading the commands."""
    parser = _Parser(
        prog="mm4watch",
        description="Run tagged Jupyter notebooks (# mm4: remote) on another machine and "
        "keep every result in results/<notebook>_<YYYYmmdd_HHMMSS>/.",
        epilog="exit codes:\n" + exit_table_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mm4watch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in [*COMMANDS, *HIDDEN]:
        summary = COMMANDS.get(name)
        if summary is None:
            p = sub.add_parser(name, help=argparse.SUPPRESS)
        else:
            p = sub.add_parser(name, help=summary, description=summary + ".")
        if every or name == command:
            add_options = getattr(_module(name), "add_options", None)
            if add_options is not None:
                add_options(p)
    # hidden commands parse, but are listed nowhere
    sub._choices_actions = [a for a in sub._choices_actions if not a.dest.startswith("_")]
    return parser


def _module(command: str) -> Any:
    return importlib.import_module(f"mm4watch.commands.{command.replace('-', '_')}")


def _command_in(argv: list[str]) -> str | None:
    """The command named in ``argv``: its first word that is not an option (the top level takes
    none with a value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request (argcomplete); only when the shell asks."""
    import argcomplete

    from . import completers

    completers.attach(parser)
    argcomplete.autocomplete(parser)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM stops the command as ^C does; a second one while it stops (records the run, brings its
    results home) is not let cut that short."""
    signal.signal(signal.SIGTERM, _stopping)  # a handler, not SIG_IGN: the processes it starts still heed TERM
    raise KeyboardInterrupt


def _stopping(signum: int, frame: object) -> None:
    """A SIGTERM while the command already stops: noted by nothing, the stop goes on."""


def _glue_sort(argv: list[str]) -> list[str]:
    """``--sort -acc`` as ``--sort=-acc``: argparse would take ``-acc`` for an option."""
    for i, word in enumerate(argv[:-1]):
        if word == "--sort" and argv[i + 1].startswith("-"):
            return [*argv[:i], f"--sort={argv[i + 1]}", *argv[i + 2 :]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    words = _glue_sort(list(sys.argv[1:] if argv is None else argv))
    asked_completion = "_ARGCOMPLETE" in os.environ
    parser = build_parser(_command_in(words), every=asked_completion)
    if asked_completion:
        _complete(parser)
    args = parser.parse_args(words)
    signal.signal(signal.SIGTERM, _terminate)
    from .core.terminal import Visible, visible

    # every line a command prints passes one filter: names, messages and log lines from runs are
    # shown, never obeyed (logs keep their colours)
    plain, sys.stdout = sys.stdout, Visible(sys.stdout, keep_sgr=args.command == "logs")
    try:
        return int(_module(args.command).main(args))
    except Mm4Error as exc:
        print(f"mm4watch: error: {visible(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mm4watch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        from .core.macos import tcc_hint

        hint = tcc_hint(exc) if isinstance(exc, PermissionError) else ""
        if hint:  # macOS kept a protected folder from us
            print(f"mm4watch: error: {visible(str(exc))}{hint}", file=sys.stderr)
            return EXIT_USAGE  # a setting of this Mac's to change, not a crash
        from .core.crash import write_crash_log

        path = write_crash_log(argv if argv is not None else sys.argv[1:])
        print(f"mm4watch: unexpected error; details in {path}. Please report it with that file.", file=sys.stderr)
        return EXIT_UNEXPECTED
    finally:
        sys.stdout.flush()
        sys.stdout = plain
