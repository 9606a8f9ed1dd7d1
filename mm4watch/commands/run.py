"""mm4watch run NOTEBOOK: execute now, in the foreground, and keep the result folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..core import config
from ..core.durations import parse_duration
from ..core.errors import EXIT_NOTEBOOK_FAILED, EXIT_OK, Mm4Error, UsageError, exit_table_text
from ..results.records import where
from ..run.pipeline import Display, RunRequest, run_notebook
from ..triggers import params


def _as_stored(path: Path) -> Path:
    """``path`` as the file system stores it (typed in NFC or in another case: one name per notebook)."""
    if path.exists():
        return path
    from ..core.names import stored

    base = Path(path.anchor) if path.is_absolute() else Path.cwd()
    return base / stored(base, str(path.relative_to(path.anchor)) if path.is_absolute() else str(path))


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "exit codes:\n" + exit_table_text()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("notebook", nargs="+", help="path to the .ipynb file; several run in order (10_clean 20_train)")
    parser.add_argument(
        "--log-output",
        action="store_true",
        help="stream the notebook's own output (stdout, stderr) as it runs, as papermill's flag of that name",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="with several notebooks: run the rest after one fails (default: stop there)",
    )
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="parameter, converted as papermill does (True/False/None, numbers, else text; [...] and {...} as YAML)",
    )
    parser.add_argument(
        "-y",
        "--param-yaml",
        action="append",
        default=[],
        nargs=2,
        metavar=("KEY", "YAML"),
        help="a parameter given as YAML (a list, a mapping, a quoted string)",
    )
    parser.add_argument(
        "-r",
        "--param-raw",
        action="append",
        default=[],
        nargs=2,
        metavar=("KEY", "TEXT"),
        help="a parameter taken as text, never converted",
    )
    parser.add_argument(
        "-f",
        "--param-file",
        action="append",
        default=[],
        metavar="FILE",
        help="a YAML file of parameters (key: value); -y, -p and -r given too win over it",
    )
    parser.add_argument(
        "--executor", metavar="NAME", help="executor from mm4.toml (default: MM4_EXECUTOR, the tag, [run] executor)"
    )
    parser.add_argument(
        "--timeout", metavar="DURATION", help="whole-run timeout, e.g. 30m or 2h (default: the tag, [run] timeout)"
    )
    parser.add_argument("--queue", action="store_true", help="queue the run for the daemon and return at once")


def main(args: argparse.Namespace) -> int:
    notebooks = [_as_stored(Path(n)) for n in args.notebook]
    for notebook in notebooks:
        if notebook.suffix.lower() != ".ipynb":
            raise UsageError(f"{notebook} is not a notebook (.ipynb)")
        if not notebook.is_file():
            raise UsageError(f"{notebook}: no such notebook")
    parameters = params.collect(args.param, args.param_yaml, args.param_raw, args.param_file)
    timeout_s = None
    if args.timeout:
        try:
            timeout_s = parse_duration(args.timeout)
        except ValueError as exc:
            raise UsageError(f"--timeout {exc}") from None
    cfg = config.load(notebooks[0].resolve().parent)
    if args.queue:
        return max(_queue(cfg, notebook, parameters, args.executor) for notebook in notebooks)
    _outlive_the_terminal(sys.stderr.isatty())  # once for all the notebooks of this command
    worst = EXIT_OK
    for index, notebook in enumerate(notebooks):
        # in order: each one sees the results of those before it (the numbered-notebook chain)
        try:
            code = _run_one(cfg, notebook, parameters, args.executor, timeout_s, args.log_output)
        except Mm4Error as exc:
            if len(notebooks) == 1:
                raise
            print(f"mm4watch: {notebook}: {exc}", file=sys.stderr)
            code = exc.exit_code
        worst = max(worst, code)
        if code != EXIT_OK and not args.keep_going and index + 1 < len(notebooks):
            rest = ", ".join(str(n) for n in notebooks[index + 1 :])
            print(
                f"mm4watch: stopped after {notebook}; not run: {rest} (--keep-going runs them anyway)", file=sys.stderr
            )
            break
    return worst


def _run_one(
    cfg: config.Config,
    notebook: Path,
    parameters: dict[str, Any],
    executor: str | None,
    timeout_s: float | None,
    log_output: bool = False,
) -> int:
    request = RunRequest(notebook=notebook, parameters=parameters, executor=executor, timeout_s=timeout_s)
    tty = sys.stderr.isatty()
    display = Display(live=tty, plain=None if tty else sys.stderr, log_output=log_output)
    record, run_dir = run_notebook(cfg, request, say=lambda line: print(line, file=sys.stderr), display=display)
    if record.status == "succeeded":
        print(run_dir)
        return EXIT_OK
    err = record.error or {}
    place = where(err)
    print(
        f"mm4watch: {record.notebook} {record.status}{' in ' + place if place else ''}: "
        f"{err.get('ename', '')}: {err.get('evalue', '')}\n"
        "  the executed notebook and run.log are kept in its run folder (the line below)",
        file=sys.stderr,
    )
    print(run_dir)
    return EXIT_NOTEBOOK_FAILED


def _queue(cfg: config.Config, notebook: Path, parameters: dict[str, Any], executor: str | None) -> int:
    """Hand the run to the daemon: the notebook's bytes now, run when its turn comes."""
    from ..core.tags import read_tag
    from ..queue import intake
    from ..queue.active import nudge, read_info

    content = notebook.read_bytes()
    rel = notebook.resolve().relative_to(cfg.root).as_posix()
    _, tag = read_tag(content, rel)
    name = cfg.executor(executor, tag=tag.executor if tag else None).name
    added = intake.request(cfg, rel, "manual", content=content, parameters=parameters, executor=name)
    running = read_info(cfg.state_dir)
    if running and added.merged_into is None:
        nudge(cfg.state_dir)
    if added.merged_into is not None:
        print(f"{rel} on {name}: {intake.describe(added)}")
        return EXIT_OK
    print(
        f"queued {rel} as entry {added.id} on {name}"
        + ("" if running else "; the daemon is not running: `mm4watch start`")
    )
    return EXIT_OK


def _outlive_the_terminal(tty: bool) -> None:
    """A closed terminal (SIGHUP) does not stop the run: it goes on with its output sent nowhere,
    and its end is recorded as usual (results home, `mm4watch history`). Said before it can happen."""
    import os
    import signal

    def hung_up(signum: int, frame: object) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):  # writes to a gone terminal fail (EIO): to nowhere instead
            os.dup2(devnull, fd)
        os.close(devnull)

    signal.signal(signal.SIGHUP, hung_up)
    if tty:
        print("mm4watch: closing this terminal leaves the run going; `mm4watch status` follows it", file=sys.stderr)
