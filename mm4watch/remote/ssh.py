"""The system OpenSSH client: commands on the far machine, and a forwarded socket.

Everything goes through ``ssh`` itself, so ~/.ssh/config, keys, agents and
ProxyJump work as they do in a terminal, and transfers run at OpenSSH speed
(not paramiko's). A remote Docker engine is reached by forwarding its unix
socket to a local one; one SSH connection then carries every API call.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..core import fsutil, proc
from ..core.errors import EXIT_UNREACHABLE, Mm4Error
from ..core.names import join, quote


class Unreachable(Mm4Error):
    """The far machine or its engine does not answer; nothing was lost."""

    exit_code = EXIT_UNREACHABLE  # nothing ran: try again when the machine is back

    @classmethod
    def over_ssh(cls, target: Target, detail: str) -> Unreachable:
        from ..core.macos import lan_hint

        return cls(
            f"cannot reach {target.label} over ssh: {detail.strip() or 'no answer'}{lan_hint(detail)}. "
            f"Check that `{target.hint}` works from a terminal without a prompt (a key in ssh-agent, "
            "or Host/User/Port/IdentityFile in ~/.ssh/config); `mm4watch doctor` checks the rest"
        )


# After the user's options (ssh takes the first value it is given, so theirs win): a connect timeout,
# and, as a machine that loses power leaves its connections silent, not closed, 2 minutes without an answer
# ends them (the shared one too), so nothing waits on it for TCP's two hours.
DEFAULTS = ("-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=8")


@dataclass(frozen=True)
class Target:
    destination: str  # user@host or a ~/.ssh/config alias
    port: int | None = None
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.destination.startswith("-"):  # from a config, a swarm's node list: never an ssh option
            raise Mm4Error(f"{self.destination!r} is not a host: it begins with '-', which ssh reads as an option")

    @classmethod
    def parse(cls, host: str, options: Sequence[str] = ()) -> Target:
        """``ssh://user@host:port`` or ``user@host``."""
        if host.startswith("ssh://"):
            parts = urlsplit(host)
            dest = f"{parts.username}@{parts.hostname}" if parts.username else (parts.hostname or "")
            return cls(dest, parts.port, tuple(options))
        return cls(host, None, tuple(options))

    @property
    def label(self) -> str:
        return self.destination + (f":{self.port}" if self.port else "")

    @property
    def hint(self) -> str:
        """The command to try by hand, in a form ssh parses (``ssh -p PORT USER@HOST true``)."""
        return join(["ssh", *(["-p", str(self.port)] if self.port else []), self.destination, "true"])

    def argv(self, *extra: str) -> list[str]:
        base = ["ssh", "-o", "BatchMode=yes"]
        if self.port:
            base += ["-p", str(self.port)]
        return [*base, *self.options, *DEFAULTS, *extra, self.destination]

    def rsync_shell(self) -> str:
        """The ssh command for ``rsync -e``. openrsync (a Mac's rsync since macOS 15.4) and rsync 2.6.9
        split it on whitespace and ignore quotes: words that would not survive that (an option with a
        space, a quote) go into a small script of this user's own instead, whose path has neither."""
        words = self.argv()[:-1]
        if all(re.fullmatch(r"[\w@%+=:,./~-]+", word) for word in words):
            return " ".join(words)
        return str(_ssh_script(words))


def _ssh_script(words: list[str]) -> Path:
    """``exec ssh WORDS "$@"`` in an executable file in this user's private folder (named by its content)."""
    text = f'#!/bin/sh\nexec {join(words)} "$@"\n'
    path = fsutil.private_dir("ssh") / f"rsync-ssh-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    if not path.exists() or path.read_text() != text:
        fsutil.atomic_write_bytes(path, text.encode(), mode=0o700)
    return path


def remote_command(command: str) -> str:
    """``command`` as sent over ssh: run by ``/bin/sh`` whatever the account's login shell.

    sshd hands a command to the user's login shell, zsh on a Mac, which does not
    word-split ``$var`` and fails on an unmatched glob; every command mm4watch
    sends is written for ``sh``, so it is handed on to ``sh`` in one ``exec``."""
    return "exec /bin/sh -c " + quote(command)


def run(
    target: Target, command: str, *, check: bool = True, timeout: float = 60, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a shell command on the far machine under ``/bin/sh`` (``input``: its standard input).

    A shared connection that refuses one more session (sshd's MaxSessions, 10 by default, reached by
    a daemon's many runs on one Mini) does not fail the command: it goes over a connection of its own."""
    try:
        try:
            return proc.run([*target.argv(), remote_command(command)], check=check, timeout=timeout, input=input)
        except proc.CommandFailed as exc:
            unshared = _unshared(target)
            if exc.code != 255 or unshared is None or not _MUX_REFUSED.search(exc.stderr):
                raise
            target = unshared
            return proc.run([*target.argv(), remote_command(command)], check=check, timeout=timeout, input=input)
    except proc.CommandFailed as exc:
        if exc.code == 255:
            raise Unreachable.over_ssh(target, exc.stderr) from None
        raise
    except subprocess.TimeoutExpired:
        raise Unreachable(f"{target.label} did not answer within {timeout:.0f}s over ssh") from None


# what ssh says when a shared connection takes no more sessions (the command itself never started)
_MUX_REFUSED = re.compile(r"mux_client_request_session|Session open refused|administratively prohibited")
_SHARED = ("-o", "ControlMaster=no", "-S")


def _unshared(target: Target) -> Target | None:
    """``target`` without the shared connection ``shared`` put on it (None: it had none)."""
    options = target.options
    if len(options) >= 4 and options[-4:-1] == _SHARED:
        return Target(target.destination, target.port, options[:-4])
    return None


def probe(target: Target) -> bool:
    """Whether the machine answers over ssh now: a connection of its own with a short connect timeout
    (never a shared one that may have died with the machine)."""
    fresh = _unshared(target) or target
    try:
        run(Target(fresh.destination, fresh.port, (*fresh.options, "-o", "ConnectTimeout=5")), "true", timeout=15)
    except (Unreachable, proc.CommandFailed):
        return False
    return True


BOOT_TIME = "sysctl -n kern.boottime 2>/dev/null || awk '/^btime/ {print $2}' /proc/stat"  # a Mac's, then Linux's


RESTART_SLACK_S = 60  # two machines' clocks differ a little: a boot this close before a loss counts as after it


def boot_time(said: str) -> float | None:
    """When the machine last started, from what ``BOOT_TIME`` printed there (``{ sec = N, usec = M }
    ...`` on a Mac, seconds on Linux; other lines around it are passed over); None when it says neither."""
    found = re.search(r"sec = (\d+)|^(\d+)\s*$", said.strip(), re.MULTILINE)
    return float(found.group(1) or found.group(2)) if found else None


def restarted_since(said: str, went_at: float) -> float | None:
    """The machine's boot time (from what ``BOOT_TIME`` printed there) when it restarted after ``went_at``."""
    return restarted_at(boot_time(said), went_at)


def restarted_at(booted: float | None, went_at: float) -> float | None:
    """``booted`` when the machine started after ``went_at`` (within the clocks' slack), else None."""
    return booted if booted is not None and booted > went_at - RESTART_SLACK_S else None


def ensure_master(target: Target, timeout: float = 20.0) -> Path | None:
    """The control socket of a shared connection to ``target``, started if needed.

    Kept ``CONTROL_PERSIST`` after its last use, so later commands, forwards
    and rsyncs skip the SSH handshake. None when multiplexing is not possible
    (commands then open their own connection).

    Processes starting at once (a daemon starting two runs on one Mini) take turns here: one
    starts the master, the others find it; none removes a socket another has just made."""
    import fcntl

    control = _control_path(target)
    with open(control.with_name(control.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_master(target, control, timeout)


def _ensure_master(target: Target, control: Path, timeout: float) -> Path | None:
    mux = target.argv("-S", str(control))
    try:
        if proc.run([*mux[:-1], "-O", "check", mux[-1]], check=False, timeout=timeout).returncode == 0:
            return control
        control.unlink(missing_ok=True)
        # started in the sockets' folder: the master outlives this process and serves every process of
        # this user, so it holds no project folder open (one removed, or a test's, would take it along)
        master = proc.run(
            target.argv("-M", "-S", str(control), "-o", f"ControlPersist={CONTROL_PERSIST}", "-f", "-N"),
            cwd=control.parent,
            check=False,
            timeout=timeout + 10,
        )
    except subprocess.TimeoutExpired:
        raise Unreachable(f"{target.label} did not answer within {timeout:.0f}s over ssh") from None
    if master.returncode != 0:
        raise Unreachable.over_ssh(target, master.stderr.decode(errors="replace"))
    return control if control.exists() else None


def shared(target: Target) -> Target:
    """``target`` with its commands riding on the shared connection."""
    control = ensure_master(target)
    if control is None:
        return target
    return Target(target.destination, target.port, (*target.options, *_SHARED, str(control)))


CONTROL_PERSIST = "10m"


def _control_path(target: Target) -> Path:
    """Where this user's shared connection to ``target`` listens (short: sockets have a length limit)."""
    folder = fsutil.private_dir("ssh")  # /tmp is everyone's: someone else's folder there would see the connection
    key = hashlib.sha256(" ".join(target.argv()).encode()).hexdigest()[:16]
    return folder / f"{key}.ctl"


class Tunnel:
    """A local unix socket forwarded to ``remote_socket`` on the target.

    The forward rides on a shared master connection (OpenSSH ControlMaster,
    kept 10 minutes after its last use), so a run after the first
    skips the SSH handshake. Where that fails, a plain ``ssh -N -L`` is used.
    """

    def __init__(self, target: Target, remote_socket: str) -> None:
        self.target = target
        self.remote_socket = remote_socket
        self.folder = Path(tempfile.mkdtemp(prefix="mm4-ssh-", dir="/tmp"))
        self.local = self.folder / "docker.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self.control: Path | None = None

    @property
    def _forward(self) -> str:
        return f"{self.local}:{self.remote_socket}"

    def open(self, timeout: float = 20.0) -> Tunnel:
        try:
            self._open_shared(timeout)
        except (OSError, subprocess.SubprocessError):
            self.control = None
        if self.control is None:
            self._open_plain(timeout)
        return self

    def _open_shared(self, timeout: float) -> None:
        control = ensure_master(self.target, timeout)
        if control is None:
            return
        mux = self.target.argv("-S", str(control))
        forward = proc.run([*mux[:-1], "-O", "forward", "-L", self._forward, mux[-1]], check=False, timeout=timeout)
        if forward.returncode == 0 and self.local.exists():
            self.control = control

    def _open_plain(self, timeout: float) -> None:
        argv = self.target.argv(
            "-N",
            "-T",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ServerAliveInterval=10",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "StreamLocalBindUnlink=yes",
            "-L",
            self._forward,
        )
        errors = self.folder / "ssh.err"
        with open(errors, "wb") as err:
            self.process = proc.detach(argv, stderr=err)
        deadline = time.monotonic() + timeout
        while not self.local.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                detail = errors.read_text(errors="replace")
                self.close()
                raise Unreachable.over_ssh(self.target, detail)
            time.sleep(0.01)

    def close(self) -> None:
        if self.control is not None:
            mux = self.target.argv("-S", str(self.control))
            proc.run([*mux[:-1], "-O", "cancel", "-L", self._forward, mux[-1]], check=False, timeout=10)
            self.control = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Tunnel:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def has_rsync() -> bool:
    return shutil.which("rsync") is not None


def rsync_to(
    target: Target,
    source: Path,
    dest: str,
    *,
    timeout: float | None = None,
    extra: Sequence[str] = (),
    mkdir: bool = True,
) -> None:
    """Mirror ``source/`` into ``dest/`` on the target (incremental; deletes extras)."""
    if not has_rsync():
        raise Mm4Error("rsync is not installed on this machine; install it (brew install rsync / apt install rsync)")
    if mkdir:
        run(target, join(["mkdir", "-p", dest]))
    proc.run(
        [
            "rsync",
            "-a",
            "--delete",
            *extra,
            "-e",
            target.rsync_shell(),
            f"{source}{os.sep}",
            f"{target.destination}:{dest.rstrip('/')}/",
        ],
        timeout=timeout,
    )


def fetch_tar(
    target: Target,
    command: str,
    into: Path,
    *,
    skip: frozenset[str] = frozenset(),
    timeout: float = 3600,
    log: Path | None = None,
) -> None:
    """Run ``command`` (which writes a tar to stdout) on the target; unpack it here as it streams."""
    import tarfile
    import zlib

    from ..core.fsutil import extract_stream

    child = proc.pipe_from([*target.argv(), remote_command(command)])
    cut: Exception | None = None
    try:
        try:
            extract_stream(child.stdout, into, skip=skip, log=log)
        except (tarfile.TarError, EOFError, zlib.error) as exc:  # the stream ended early: ssh's end says why
            cut = exc
        child.wait(timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    detail = (child.stderr.read() if child.stderr else b"").decode(errors="replace").strip()
    if child.returncode == 255:
        raise Unreachable(f"lost {target.label} while bringing results home: {detail}")
    if child.returncode != 0 or cut is not None:
        raise Mm4Error(f"bringing results home from {target.label} failed: {detail or cut}")
