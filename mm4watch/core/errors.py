"""Errors a person can act on, and the one table of exit codes.

Every expected failure is an ``Mm4Error``: its message says what failed, where
(file and line, host, run) and what to do. ``cli.main`` prints the message and
exits with the error's code; commands, the git hook and the runner return codes
from this table and no other.
"""

from __future__ import annotations

# The exit-code table: --help and README.md print this same text.
EXIT_OK = 0
EXIT_NOTEBOOK_FAILED = 1
EXIT_USAGE = 2
EXIT_UNEXPECTED = 3
EXIT_UNREACHABLE = 75  # EX_TEMPFAIL: try again later
EXIT_INTERRUPTED = 130

EXIT_TABLE = (
    (EXIT_OK, "ok"),
    (EXIT_NOTEBOOK_FAILED, "the notebook failed (error, timeout, crashed kernel)"),
    (EXIT_USAGE, "usage or configuration error (bad mm4.toml, bad notebook, unknown run)"),
    (EXIT_UNEXPECTED, "unexpected error (a crash log is written under .mm4/)"),
    (EXIT_UNREACHABLE, "the executor could not be reached (the Mini is off or ssh fails); nothing ran"),
    (EXIT_INTERRUPTED, "interrupted (^C)"),
)


def exit_table_text() -> str:
    return "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_TABLE)


class Mm4Error(Exception):
    """An expected failure with a message meant for a person."""

    exit_code = EXIT_USAGE


class UsageError(Mm4Error):
    exit_code = EXIT_USAGE


class ConfigError(Mm4Error):
    """mm4.toml is wrong: the message names the file, the line and the key."""

    exit_code = EXIT_USAGE


class NotebookError(Mm4Error):
    """A notebook file cannot be read as a notebook."""

    exit_code = EXIT_USAGE


class RunNotFound(Mm4Error, LookupError):
    exit_code = EXIT_USAGE


class RunNotSent(RunNotFound):
    """A run a notebook asked for exists, but its folder was not sent to the machine that runs it."""
