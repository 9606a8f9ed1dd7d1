"""mm4watch service install|uninstall: start the daemon at login (launchd or systemd --user)."""

from __future__ import annotations

import argparse
import hashlib
import platform
import sys
from pathlib import Path
from xml.sax.saxutils import escape

from .. import config
from ..fsutil import atomic_write_text


def unit_path(cfg: config.Config, system: str) -> tuple[Path, str]:
    slug = f"{config._slug(cfg.root.name)}-{hashlib.sha256(str(cfg.root).encode()).hexdigest()[:8]}"
    home = config.home()
    if system == "Darwin":
        label = f"com.mm4watch.{slug}"
        return home / "Library" / "LaunchAgents" / f"{label}.plist", label
    name = f"mm4watch-{slug}.service"
    return home / ".config" / "systemd" / "user" / name, name


def launchd_plist(cfg: config.Config, label: str) -> str:
    args = "".join(f"<string>{escape(a)}</string>" for a in (sys.executable, "-m", "mm4watch", "start", "--foreground"))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key><string>{escape(label)}</string>
  <key>ProgramArguments</key><array>{args}</array>
  <key>WorkingDirectory</key><string>{escape(str(cfg.root))}</string>
  <key>RunAtLoad</key><true/>
  <key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict>
  <key>StandardErrorPath</key><string>{escape(str(cfg.state_dir / "daemon.log"))}</string>
</dict>
</plist>
"""


def systemd_unit(cfg: config.Config) -> str:
    return f"""[Unit]
Description=mm4watch for {cfg.root}

[Service]
WorkingDirectory={cfg.root}
ExecStart={sys.executable} -m mm4watch start --foreground
Restart=on-failure
KillMode=process

[Install]
WantedBy=default.target
"""


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    system = platform.system()
    path, name = unit_path(cfg, system)
    if args.action == "uninstall":
        if path.exists():
            path.unlink()
            print(f"removed {path}")
        else:
            print(f"nothing installed at {path}")
        print(
            f"then: launchctl unload {path}" if system == "Darwin" else f"then: systemctl --user disable --now {name}"
        )
        return 0
    text = launchd_plist(cfg, name) if system == "Darwin" else systemd_unit(cfg)
    if args.action == "show":
        print(text, end="")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    print(f"wrote {path}")
    print(
        f"start it now and at every login: launchctl load -w {path}"
        if system == "Darwin"
        else f"start it now and at every login: systemctl --user daemon-reload && systemctl --user enable --now {name}"
    )
    return 0
