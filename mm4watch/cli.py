"""Command line: parse, dispatch, map errors to the exit-code table.

Kept light: each command's module is imported only when that command runs,
so ``mm4watch --help`` and the git hook start fast.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import __version__
from .core.errors import EXIT_INTERRUPTED, EXIT_UNEXPECTED, EXIT_USAGE, Mm4Error, exit_table_text

COMMANDS = {
    "run": "execute a notebook now and keep its result folder",
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mm4watch",
        description="Run tagged Jupyter notebooks (# mm4: remote) on another machine and "
        "keep every result in results/<notebook>_<YYYYmmdd_HHMMSS>/.",
        epilog="exit codes:\n" + exit_table_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mm4watch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "run",
        help=COMMANDS["run"],
        description=COMMANDS["run"] + ".",
        epilog="exit codes:\n" + exit_table_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("notebook", nargs="+", help="path to the .ipynb file; several run in order (10_clean 20_train)")
    p.add_argument(
        "--log-output",
        action="store_true",
        help="stream the notebook's own output (stdout, stderr) as it runs, as papermill's flag of that name",
    )
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="with several notebooks: run the rest after one fails (default: stop there)",
    )
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="parameter, converted as papermill does (True/False/None, numbers, else text; [...] and {...} as YAML)",
    )
    p.add_argument(
        "-y",
        "--param-yaml",
        action="append",
        default=[],
        nargs=2,
        metavar=("KEY", "YAML"),
        help="a parameter given as YAML (a list, a mapping, a quoted string)",
    )
    p.add_argument(
        "-r",
        "--param-raw",
        action="append",
        default=[],
        nargs=2,
        metavar=("KEY", "TEXT"),
        help="a parameter taken as text, never converted",
    )
    p.add_argument(
        "-f",
        "--param-file",
        action="append",
        default=[],
        metavar="FILE",
        help="a YAML file of parameters (key: value); -y, -p and -r given too win over it",
    )
    p.add_argument(
        "--executor", metavar="NAME", help="executor from mm4.toml (default: MM4_EXECUTOR, the tag, [run] executor)"
    )
    p.add_argument(
        "--timeout", metavar="DURATION", help="whole-run timeout, e.g. 30m or 2h (default: the tag, [run] timeout)"
    )
    p.add_argument("--queue", action="store_true", help="queue the run for the daemon and return at once")

    p = sub.add_parser("start", help=COMMANDS["start"], description=COMMANDS["start"] + ".")
    p.add_argument("--foreground", action="store_true", help="stay in the foreground (for launchd/systemd)")

    p = sub.add_parser("stop", help=COMMANDS["stop"], description=COMMANDS["stop"] + ".")
    p.add_argument("--now", action="store_true", help="cancel the run in progress (its results so far are kept)")

    sub.add_parser("status", help=COMMANDS["status"], description=COMMANDS["status"] + ".")

    p = sub.add_parser("queue", help=COMMANDS["queue"], description=COMMANDS["queue"] + ".")
    p.add_argument("action", nargs="?", choices=["list", "remove", "retry", "clear"], default="list")
    p.add_argument("entry", nargs="?", type=int, metavar="ENTRY", help="entry number, for remove and retry")
    p.add_argument(
        "--all",
        action="store_true",
        help="also requests merged into another run, replaced saves and rejected entries (last 24 h)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("service", help=COMMANDS["service"], description=COMMANDS["service"] + ".")
    p.add_argument("action", choices=["install", "uninstall", "show"])
    p.add_argument(
        "--for", dest="system", choices=["macos", "linux"], help="the unit for that system (default: this one's)"
    )
    p.add_argument(
        "--at-boot",
        action="store_true",
        help="macOS: a launchd daemon run as you, from boot, without a login (sudo once); "
        "not kept off the LAN by Local Network Privacy as an agent may be",
    )

    sub.add_parser("install-hooks", help=COMMANDS["install-hooks"], description=COMMANDS["install-hooks"] + ".")
    sub.add_parser("uninstall-hooks", help=COMMANDS["uninstall-hooks"], description=COMMANDS["uninstall-hooks"] + ".")

    p = sub.add_parser("rerun", help=COMMANDS["rerun"], description=COMMANDS["rerun"] + ".")
    p.add_argument("run", metavar="RUN", help="run id, unique id prefix or notebook name (its latest run)")

    p = sub.add_parser("fetch", help=COMMANDS["fetch"], description=COMMANDS["fetch"] + ".")
    p.add_argument("run", metavar="RUN", help="run id, unique id prefix or notebook name (its latest run)")

    p = sub.add_parser("_exec", help=argparse.SUPPRESS)
    p.add_argument("--reattach", action="store_true")
    p.add_argument("entry", type=int)

    p = sub.add_parser("_resume", help=argparse.SUPPRESS)
    p.add_argument("run")

    p = sub.add_parser("_dask_agent", help=argparse.SUPPRESS)
    p.add_argument("address")
    p.add_argument("--idle", type=float, default=None, help="end after this many seconds with nobody connected")
    for name in ("ca", "cert", "key"):
        p.add_argument(f"--tls-{name}", metavar="FILE", help=f"this machine's TLS {name} for a tls:// scheduler")

    p = sub.add_parser("history", help=COMMANDS["history"], description=COMMANDS["history"] + ".")
    p.add_argument("--notebook", metavar="NAME", help="only this notebook (name or path)")
    p.add_argument(
        "--status",
        metavar="STATUS",
        action="append",
        help="only runs with this status (repeatable): queued, running, succeeded, failed, timeout, cancelled, interrupted",
    )
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N runs (default 20; 0 for all)")
    p.add_argument(
        "--sort",
        metavar="KEY",
        help="order by a metric (or parameter): --sort loss smallest first, --sort -acc largest first",
    )
    p.add_argument(
        "--columns",
        metavar="A,B",
        help="parameter and metric columns to show, in order (param:NAME or metric:NAME when both exist); "
        "default: up to 8, those that differ between the listed runs first; '' for none",
    )
    p.add_argument(
        "--json", action="store_true", help="print a JSON array of run records (with parameters and metrics)"
    )

    p = sub.add_parser("show", help=COMMANDS["show"], description=COMMANDS["show"] + ".")
    p.add_argument("run", metavar="RUN", help="run id, unique id prefix, notebook name (its latest run) or run folder")
    p.add_argument("--json", action="store_true", help="print run.json as it is")

    p = sub.add_parser("diff", help=COMMANDS["diff"], description=COMMANDS["diff"] + ".")
    p.add_argument("run_a", metavar="RUN_A", help="run id, unique id prefix, notebook name (its latest run) or folder")
    p.add_argument("run_b", metavar="RUN_B", help="the run to compare with RUN_A (deltas are B - A)")
    p.add_argument(
        "--plain", action="store_true", help="a per-cell unified diff of the code even when nbdime is installed"
    )
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")

    p = sub.add_parser("report", help=COMMANDS["report"], description=COMMANDS["report"] + ".")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.add_argument("--background", action="store_true", help=argparse.SUPPRESS)  # the daemon's: at a low priority

    p = sub.add_parser("open", help=COMMANDS["open"], description=COMMANDS["open"] + ".")
    p.add_argument("run", nargs="?", metavar="RUN", help="run id, unique id prefix or notebook name; none: the report")

    p = sub.add_parser("logs", help=COMMANDS["logs"], description=COMMANDS["logs"] + ".")
    p.add_argument("run", metavar="RUN", help="run id, unique id prefix, notebook name (its latest run) or run folder")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")

    p = sub.add_parser("cancel", help=COMMANDS["cancel"], description=COMMANDS["cancel"] + ".")
    p.add_argument("run", metavar="RUN", help="run id, unique id prefix or notebook name")

    p = sub.add_parser(
        "doctor",
        help=COMMANDS["doctor"],
        description=COMMANDS["doctor"] + ". Exit 0 when all checks pass, 1 otherwise.",
    )
    p.add_argument("executor", nargs="?", metavar="EXECUTOR", help="executor name (default: as for run)")

    p = sub.add_parser("gc", help=COMMANDS["gc"], description=COMMANDS["gc"] + ".")
    p.add_argument("executor", nargs="?", metavar="EXECUTOR", help="executor name (default: as for run)")
    p.add_argument("--keep", type=int, metavar="N", help="how many to keep (default: keep_images, 3)")

    p = sub.add_parser("pool", help=COMMANDS["pool"], description=COMMANDS["pool"] + ".")
    p.add_argument("action", choices=["certs", "worker"])
    p.add_argument("folder", nargs="?", metavar="FOLDER", help="certs: where to make them (a new or empty folder)")
    p.add_argument("--days", type=int, default=3650, help="certs: how long they hold (default: 3650)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="worker: the scheduler, tls://HOST:8786")
    p.add_argument("--name", metavar="NAME", help="worker: its name (as [executors.X] nodes maps it)")
    p.add_argument("--user", metavar="USER", help="worker: the Mini's account it runs as (default: yours)")
    p.add_argument("--home", metavar="DIR", help="worker: that account's home (default: /Users/USER)")
    p.add_argument("--dask", metavar="PATH", help="worker: the dask command (default: HOME/dask/bin/dask)")
    p.add_argument("--tls", metavar="DIR", help="worker: ca.pem, node.pem, node-key.pem (default: HOME/tls)")

    sub.add_parser("init", help=COMMANDS["init"], description=COMMANDS["init"] + ".")

    p = sub.add_parser(
        "check",
        help=COMMANDS["check"],
        description=COMMANDS["check"] + ". Exit 0 when all are fine, 1 otherwise.",
    )
    p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="notebooks to check")
    p.add_argument("--no-outputs", action="store_true", help="also refuse tagged notebooks that carry outputs")

    p = sub.add_parser("completion", help=COMMANDS["completion"], description=COMMANDS["completion"] + ".")
    p.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete in")
    # hidden commands parse, but are listed nowhere
    sub._choices_actions = [a for a in sub._choices_actions if not a.dest.startswith("_")]
    return parser


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request (argcomplete); only when the shell asks."""
    import os

    if "_ARGCOMPLETE" not in os.environ:
        return
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
    parser = build_parser()
    _complete(parser)
    args = parser.parse_args(_glue_sort(list(sys.argv[1:] if argv is None else argv)))
    signal.signal(signal.SIGTERM, _terminate)
    from .core.terminal import Visible, visible

    # every line a command prints passes one filter: names, messages and log lines from runs are
    # shown, never obeyed (logs keep their colours)
    plain, sys.stdout = sys.stdout, Visible(sys.stdout, keep_sgr=args.command == "logs")
    try:
        module = importlib.import_module(f"mm4watch.commands.{args.command.replace('-', '_')}")
        return int(module.main(args))
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
