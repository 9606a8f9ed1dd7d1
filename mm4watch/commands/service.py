"""mm4watch service install|uninstall|show: start the daemon at login (a launchd agent, or systemd --user).

On macOS the agent is loaded into the user's GUI session with ``launchctl
bootstrap gui/<uid>`` and taken out with ``bootout`` by its label (so the plist
can be removed after launchd let go of it; ``load``/``unload`` are the old,
deprecated verbs). On Linux the commands to run are printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import plistlib
import shutil
import sys
from pathlib import Path
from typing import Any

from ..core import config, proc
from ..core.errors import Mm4Error
from ..core.fsutil import atomic_write_bytes, atomic_write_text

LAUNCHD_LOG = "launchd.log"  # launchd's own stdout/stderr of the agent: daemon.log is the daemon's, rotated


def unit_path(cfg: config.Config, system: str) -> tuple[Path, str]:
    slug = cfg.project_key
    home = config.home()
    if system == "Darwin":
        label = f"com.mm4watch.{slug}"
        return home / "Library" / "LaunchAgents" / f"{label}.plist", label
    name = f"mm4watch-{slug}.service"
    return home / ".config" / "systemd" / "user" / name, name


def _command() -> list[str]:
    return [sys.executable, "-m", "mm4watch", "start", "--foreground"]


def launchd_agent(cfg: config.Config, label: str) -> dict[str, Any]:
    """The agent's keys, as ``plistlib`` writes them."""
    return {
        "Label": label,
        "ProgramArguments": _command(),
        "WorkingDirectory": str(cfg.root),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        # Without a ProcessType launchd applies "light resource limits", throttling the CPU and I/O
        # of the daemon and of every local run it starts; Standard is the same. Interactive runs it
        # as an app: a run the daemon starts goes as fast as one started from a terminal.
        "ProcessType": "Interactive",
        # launchd gives an agent PATH=/usr/bin:/bin:/usr/sbin:/sbin: without the installing shell's,
        # Homebrew's git, rsync and a notify command are not found
        "EnvironmentVariables": {"PATH": config.env("PATH") or "/usr/bin:/bin:/usr/sbin:/sbin"},
        "StandardOutPath": str(cfg.state_dir / LAUNCHD_LOG),
        "StandardErrorPath": str(cfg.state_dir / LAUNCHD_LOG),
    }


def launchd_plist(cfg: config.Config, label: str) -> bytes:
    return plistlib.dumps(launchd_agent(cfg, label), sort_keys=False)


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


def _launchctl(*args: str) -> bool:
    """Run ``launchctl`` (False when it is not there); its refusal is an error that says what it said."""
    if shutil.which("launchctl") is None:
        return False
    done = proc.run(["launchctl", *args], check=False, timeout=30)
    if done.returncode != 0 and args[0] == "bootstrap":
        raise Mm4Error(
            f"launchctl {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()} "
            f"(exit {done.returncode}); `mm4watch service uninstall` and install again"
        )
    return True


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    system = {"macos": "Darwin", "linux": "Linux"}.get(getattr(args, "system", None) or "", platform.system())
    path, name = unit_path(cfg, system)
    domain = f"gui/{os.getuid()}"
    if args.action == "show":
        if system == "Darwin":
            sys.stdout.write(launchd_plist(cfg, name).decode())
        else:
            print(systemd_unit(cfg), end="")
        return 0
    if args.action == "uninstall":
        if system == "Darwin":  # out of launchd first, by label: it needs the plist no more
            if _launchctl("bootout", f"{domain}/{name}"):
                print(f"launchctl bootout {domain}/{name}")
        if path.exists():
            path.unlink()
            print(f"removed {path}")
        else:
            print(f"nothing installed at {path}")
        if system != "Darwin":
            print(f"then: systemctl --user disable --now {name}")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    if system == "Darwin":
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, launchd_plist(cfg, name))
        print(f"wrote {path}")
        _launchctl("bootout", f"{domain}/{name}")  # an earlier version of it, if loaded
        if _launchctl("bootstrap", domain, str(path)):
            print(f"launchctl bootstrap {domain} {path}: the daemon runs now and at every login")
        else:
            print(f"start it now and at every login: launchctl bootstrap {domain} {path}")
        return 0
    atomic_write_text(path, systemd_unit(cfg))
    print(f"wrote {path}")
    print(f"start it now and at every login: systemctl --user daemon-reload && systemctl --user enable --now {name}")
    return 0
