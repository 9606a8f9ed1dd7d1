"""The one seam for subprocesses: run them, start them, detach them, stop whole process trees.

Every child process of mm4watch starts here (git, ssh, rsync, the runner, the
daemon's run processes); nothing else calls ``subprocess``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from .errors import Mm4Error


class CommandFailed(Mm4Error):
    def __init__(self, argv: Sequence[str], code: int, stdout: str, stderr: str) -> None:
        self.argv, self.code, self.stdout, self.stderr = list(argv), code, stdout, stderr
        detail = (stderr or stdout).strip()
        super().__init__(f"command failed (exit {code}): {' '.join(argv)}" + (f"\n{detail}" if detail else ""))


def command(name: str, *args: str) -> list[str]:
    """mm4watch's own command ``name`` as a process's argv (this Python, ``-m mm4watch``): how a room
    below the commands starts one (a run's process, the daemon, the report), by name; the one place
    that spells it, and ``tests/test_house.py`` checks each name is a command."""
    return [sys.executable, "-m", "mm4watch", name, *args]


def helper(kind: str, name: str, *args: str) -> list[str]:
    """The argv of helper ``name`` that executor type ``kind`` registers (``mm4watch _helper``)."""
    return command("_helper", kind, name, *args)


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=env,
            input=input,
            capture_output=True,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise Mm4Error(f"{argv[0]} is not installed or not on PATH") from None
    if check and done.returncode != 0:
        raise CommandFailed(
            argv, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        )
    return done


def spawn(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], stdout: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start a child in its own session, so ^C at the terminal reaches mm4watch only."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def detach(
    argv: Sequence[str], *, cwd: Path | None = None, stdout: IO[bytes] | None = None, stderr: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """Start a process that outlives this one: a session of its own, no stdin; output to ``stdout``
    (and ``stderr``, default: with stdout), or nowhere."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
        stderr=stderr if stderr is not None else (subprocess.STDOUT if stdout is not None else subprocess.DEVNULL),
        start_new_session=True,
    )


def pipe_from(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """A child whose output is read as it streams; its stderr is kept for the error message."""
    return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def pipe_through(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """A child fed on its stdin while its output (stderr with it) is read as it streams."""
    return subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_pid_tree(pid: int, grace_s: float = 10.0) -> None:
    """``stop_tree`` for a process that is not our child (found by its pid)."""
    import psutil

    try:
        top = psutil.Process(pid)
        tree = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    try:
        top.terminate()
        top.wait(grace_s)
    except (psutil.TimeoutExpired, psutil.NoSuchProcess):
        pass  # still there: killed below, with its tree; gone: its tree may not be
    _kill_all(tree)


def _kill_all(tree: list[Any]) -> None:
    """SIGKILL every process of ``tree`` (psutil processes) that is still there, and wait for them."""
    import psutil

    for process in tree:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=5)


def stop_tree(child: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the child, wait ``grace_s``, then SIGKILL it and every descendant.

    Descendants are collected before the signal: a Jupyter kernel runs in a
    session of its own and would otherwise outlive its parent.
    """
    import psutil

    try:
        top = psutil.Process(child.pid)
        tree = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    _kill_all(tree)
    child.wait()
