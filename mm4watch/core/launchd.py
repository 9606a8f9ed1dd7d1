"""launchd, the one place mm4watch talks to it: job property lists and ``launchctl``.

Two kinds of job (launchd.plist(5)):

- a LaunchAgent (``~/Library/LaunchAgents``, ``launchctl bootstrap gui/<uid>``): runs in the
  user's GUI session, so only while someone is logged in; on macOS 15 and later it is subject to
  Local Network Privacy (Apple TN3179): until someone clicks Allow, it gets "No route to host"
  to LAN addresses, and a headless Mini has nobody to click.
- a LaunchDaemon with ``UserName`` (``/Library/LaunchDaemons``, ``sudo launchctl bootstrap
  system``): starts at boot, without a login, as that user; launchd daemons are exempt from
  Local Network Privacy. Loading one needs an administrator once.

``bootout`` returns before the job is gone; a ``bootstrap`` right after it answers "5:
Input/output error". ``replace`` waits until ``launchctl print`` no longer finds the label,
and tries a refused bootstrap again.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from . import proc
from .errors import Mm4Error

GONE_WAIT_S = 15.0  # how long a bootout may take to finish
BOOTSTRAP_TRIES = 5
IO_ERROR = 5  # launchctl's "Input/output error": the old job is still unloading

DAEMONS = Path("/Library/LaunchDaemons")


def job(
    label: str,
    argv: list[str],
    *,
    user: str | None = None,
    home: str | None = None,
    path_env: str | None = None,
    workdir: str | None = None,
    log: str | None = None,
    keep_alive: Any = True,
) -> dict[str, Any]:
    """A job's keys, as ``plistlib`` writes them. ``user``: a LaunchDaemon run as that user (it has
    no login session: ``HOME`` and ``PATH`` are set here, launchd gives neither as a shell would)."""
    keys: dict[str, Any] = {"Label": label, "ProgramArguments": argv}
    if user:
        keys["UserName"] = user
    if workdir:
        keys["WorkingDirectory"] = workdir
    keys["RunAtLoad"] = True
    keys["KeepAlive"] = keep_alive
    # Without a ProcessType launchd applies "light resource limits", throttling the CPU and I/O of
    # the job and of all it starts; Interactive runs it as an app would run.
    keys["ProcessType"] = "Interactive"
    env = {"PATH": path_env or "/usr/bin:/bin:/usr/sbin:/sbin"}
    if home:
        env["HOME"] = home
    keys["EnvironmentVariables"] = env
    if log:
        keys["StandardOutPath"] = keys["StandardErrorPath"] = log
    return keys


def available() -> bool:
    return shutil.which("launchctl") is not None


def _launchctl(*args: str, sudo: list[str] | None = None, timeout: float = 120) -> tuple[int, str]:
    done = proc.run([*(sudo or []), "launchctl", *args], check=False, timeout=timeout)
    return done.returncode, (done.stderr or done.stdout).decode(errors="replace").strip()


def loaded(service: str, sudo: list[str] | None = None) -> bool:
    """Whether launchd still knows ``service`` (``gui/501/com.example``, ``system/com.example``)."""
    return _launchctl("print", service, sudo=sudo)[0] == 0


def bootout(service: str, sudo: list[str] | None = None) -> bool:
    """Take ``service`` out of launchd and wait until it is gone; whether it was there."""
    if not loaded(service, sudo):
        return False
    _launchctl("bootout", service, sudo=sudo)
    deadline = time.monotonic() + GONE_WAIT_S
    while loaded(service, sudo):
        if time.monotonic() > deadline:
            raise Mm4Error(
                f"launchd still has {service} {GONE_WAIT_S:.0f}s after `launchctl bootout`; "
                f"try `launchctl bootout {service}` by hand, then install again"
            )
        time.sleep(0.2)
    return True


def bootstrap(domain: str, plist: Path, sudo: list[str] | None = None) -> None:
    """Load ``plist`` into ``domain``; "5: Input/output error" (the old job not gone yet) is tried
    again after a pause, other refusals say what launchctl said and what to do."""
    for attempt in range(1, BOOTSTRAP_TRIES + 1):
        code, said = _launchctl("bootstrap", domain, str(plist), sudo=sudo)
        if code == 0:
            return
        if code == IO_ERROR and attempt < BOOTSTRAP_TRIES:
            time.sleep(0.5 * attempt)
            continue
        raise Mm4Error(f"launchctl bootstrap {domain} {plist} failed: {said} (exit {code}){_why(domain, code)}")


def _why(domain: str, code: int) -> str:
    if code == 125 and domain.startswith("gui/"):
        return (
            ". Nobody is logged in to this Mac's desktop (an ssh session has no GUI domain): log in once, "
            "turn on automatic login (System Settings > Users & Groups; FileVault must be off for it), "
            "or install it to start at boot: `mm4watch service install --at-boot`"
        )
    if code == IO_ERROR:
        return f". launchd was still unloading the earlier job: run `launchctl print {domain}` and try again"
    return ""


def as_root() -> bool:
    return os.geteuid() == 0
