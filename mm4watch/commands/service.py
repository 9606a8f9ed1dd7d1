"""mm4watch service install|uninstall|show: start the daemon at login (a launchd agent, or systemd --user),
or at boot (``--at-boot``: a launchd daemon run as this user).

On macOS the agent is loaded into the user's GUI session with ``launchctl bootstrap gui/<uid>``
and taken out with ``bootout`` by its label, waiting until launchd has let go of it (so a
reinstall does not meet "5: Input/output error"). An agent runs only while the user is logged in
and, on macOS 15 and later, may be kept off the LAN by Local Network Privacy until someone clicks
Allow; ``--at-boot`` installs a LaunchDaemon with ``UserName`` instead (exempt, no login needed;
``sudo`` once). On Linux the commands to run are printed. launchd itself: ``core/launchd``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import platform
import plistlib
import shlex
import sys
from pathlib import Path
from typing import Any

from ..core import config, launchd, proc
from ..core.errors import Mm4Error
from ..core.fsutil import atomic_write_bytes, atomic_write_text

LAUNCHD_LOG = "launchd.log"  # launchd's own stdout/stderr of the agent: daemon.log is the daemon's, rotated


def unit_path(cfg: config.Config, system: str, at_boot: bool = False) -> tuple[Path, str]:
    slug = cfg.project_key
    home = config.home()
    if system == "Darwin":
        label = f"com.mm4watch.{slug}"
        if at_boot:
            return launchd.DAEMONS / f"{label}.plist", label
        return home / "Library" / "LaunchAgents" / f"{label}.plist", label
    name = f"mm4watch-{slug}.service"
    return home / ".config" / "systemd" / "user" / name, name


def _command() -> list[str]:
    return proc.command("start", "--foreground")


def launchd_agent(cfg: config.Config, label: str, at_boot: bool = False) -> dict[str, Any]:
    """The job's keys, as ``plistlib`` writes them: an agent, or (``at_boot``) a daemon run as this user.
    launchd gives a job PATH=/usr/bin:/bin:/usr/sbin:/sbin: the installing shell's is kept, so
    Homebrew's git, rsync and a notify command are found."""
    return launchd.job(
        label,
        _command(),
        user=getpass.getuser() if at_boot else None,
        home=str(config.home()) if at_boot else None,
        path_env=config.env("PATH"),
        workdir=str(cfg.root),
        log=str(cfg.state_dir / LAUNCHD_LOG),
        keep_alive={"SuccessfulExit": False},
    )


def launchd_plist(cfg: config.Config, label: str, at_boot: bool = False) -> bytes:
    return plistlib.dumps(launchd_agent(cfg, label, at_boot), sort_keys=False)


def systemd_unit(cfg: config.Config) -> str:
    """The user unit, every value escaped as systemd reads it (``%`` is a specifier, ``$`` a
    variable in ExecStart, words are quoted); a value systemd cannot hold (a line break) is refused."""
    path = config.env("PATH") or "/usr/bin:/bin"
    root = _unit_value(str(cfg.root), "the project's path")
    return f"""[Unit]
Description=mm4watch for {root}

[Service]
WorkingDirectory={root}
Environment={_quoted(f"PATH={_unit_value(path, 'PATH')}")}
ExecStart={" ".join(_quoted(_unit_value(word, "the command").replace("$", "$$")) for word in _command())}
Restart=on-failure
KillMode=process

[Install]
WantedBy=default.target
"""


def _unit_value(text: str, what: str) -> str:
    if any(c in text for c in "\n\r\0") or text.endswith("\\"):
        raise Mm4Error(
            f"{what} holds a line break or ends in a backslash, which a systemd unit cannot hold: {text!r}; "
            "move the project to a folder whose path has none"
        )
    return text.replace("%", "%%")


def _quoted(text: str) -> str:
    """One word in double quotes, as systemd unquotes it (C-style backslash escapes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["install", "uninstall", "show"])
    parser.add_argument(
        "--for", dest="system", choices=["macos", "linux"], help="the unit for that system (default: this one's)"
    )
    parser.add_argument(
        "--at-boot",
        action="store_true",
        help="macOS: a launchd daemon run as you, from boot, without a login (sudo once); "
        "not kept off the LAN by Local Network Privacy as an agent may be",
    )


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    system = {"macos": "Darwin", "linux": "Linux"}.get(getattr(args, "system", None) or "", platform.system())
    at_boot = bool(getattr(args, "at_boot", False))
    if at_boot and system != "Darwin":
        raise Mm4Error("--at-boot is for macOS (a launchd daemon); on Linux a systemd user unit with lingering does it")
    path, name = unit_path(cfg, system, at_boot)
    if args.action == "show":
        if system == "Darwin":
            sys.stdout.write(launchd_plist(cfg, name, at_boot).decode())
        else:
            print(systemd_unit(cfg), end="")
        return 0
    if system == "Darwin" and at_boot:
        return _at_boot(cfg, args.action, path, name)
    if system == "Darwin":
        return _agent(cfg, args.action, path, name)
    if args.action == "uninstall":
        if path.exists():
            path.unlink()
            print(f"removed {path}")
        else:
            print(f"nothing installed at {path}")
        print(f"then: systemctl --user disable --now {name}")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, systemd_unit(cfg))
    print(f"wrote {path}")
    print(f"start it now and at every login: systemctl --user daemon-reload && systemctl --user enable --now {name}")
    return 0


def _agent(cfg: config.Config, action: str, path: Path, label: str) -> int:
    domain = f"gui/{os.getuid()}"
    service = f"{domain}/{label}"
    if action == "uninstall":
        if launchd.available() and launchd.bootout(service):  # out of launchd first: it needs the plist no more
            print(f"launchctl bootout {service}")
        if path.exists():
            path.unlink()
            print(f"removed {path}")
        else:
            print(f"nothing installed at {path}")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, launchd_plist(cfg, label))
    print(f"wrote {path}")
    if not launchd.available():
        print(f"start it now and at every login: launchctl bootstrap {domain} {path}")
        return 0
    if launchd.bootout(service):  # an earlier version of it: gone before the new one is loaded
        print(f"launchctl bootout {service} (the earlier one)")
    launchd.bootstrap(domain, path)
    print(f"launchctl bootstrap {domain} {path}: the daemon runs now and at every login")
    return 0


def _at_boot(cfg: config.Config, action: str, path: Path, label: str) -> int:
    """A LaunchDaemon run as this user: the plist is made in the project's state folder, then installed
    to /Library/LaunchDaemons and loaded into the system domain as root (through sudo)."""
    service = f"system/{label}"
    staged = cfg.state_dir / f"{label}.plist"
    sudo = [] if launchd.as_root() else ["sudo"]
    if action == "uninstall":
        steps = [[*sudo, "launchctl", "bootout", service], [*sudo, "rm", "-f", str(path)]]
    else:
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(staged, launchd_plist(cfg, label, at_boot=True))
        print(f"wrote {staged} (runs as {getpass.getuser()}, at boot, without a login)")
        steps = [
            [*sudo, "install", "-m", "644", "-o", "root", "-g", "wheel", str(staged), str(path)],
            [*sudo, "launchctl", "bootstrap", "system", str(path)],
        ]
    if not launchd.available() or (sudo and not sys.stdin.isatty()):
        print("then, as an administrator:")
        for step in steps:
            print("  " + shlex.join(step))
        return 0
    if action == "uninstall":
        if launchd.bootout(service, sudo=sudo):
            print(f"launchctl bootout {service}")
        proc.run(steps[1], timeout=120)
        print(f"removed {path}")
        return 0
    proc.run(steps[0], timeout=120)  # sudo asks for the password on this terminal
    print(f"installed {path}")
    if launchd.bootout(service, sudo=sudo):
        print(f"launchctl bootout {service} (the earlier one)")
    launchd.bootstrap("system", path, sudo=sudo)
    print(f"launchctl bootstrap system {path}: the daemon runs now and at every boot, as {getpass.getuser()}")
    return 0
