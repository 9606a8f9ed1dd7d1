"""What macOS itself may be behind a failure, said in words (no calls of its own: text and facts in,
a hint out, so the same words reach doctor, the daemon's log and a run's record).

- Local Network Privacy (macOS 15 and later, Apple TN3179): a program started by launchd as an
  agent gets "No route to host" to LAN addresses until someone clicks Allow; launchd daemons,
  root, and programs run from Terminal or over ssh are exempt.
- Protected folders (TCC): a program launchd started reading ~/Documents, ~/Desktop or iCloud
  Drive gets "Operation not permitted" unless its binary has Full Disk Access, a grant that
  belongs to that one file (a Homebrew upgrade of the Python loses it).
"""

from __future__ import annotations

import errno
import os
import sys

NO_ROUTE = "No route to host"


def under_launchd() -> bool:
    """Whether this process was started by launchd as a job (launchd sets XPC_SERVICE_NAME to its label)."""
    name = os.environ.get("XPC_SERVICE_NAME", "")
    return sys.platform == "darwin" and name not in ("", "0")


def lan_hint(text: str) -> str:
    """A sentence for a "No route to host" (empty for anything else)."""
    if NO_ROUTE.lower() not in text.lower():
        return ""
    return (
        f" ({NO_ROUTE}: the machine is off, asleep or on another network, or, on macOS 15 and later, Local "
        "Network Privacy keeps a program launchd started as an agent off the LAN until it is allowed in "
        "System Settings > Privacy & Security > Local Network. A launchd daemon is exempt: "
        "`mm4watch service install --at-boot` here, `mm4watch pool worker` for a Mini's Dask worker)"
    )


def tcc_hint(exc: OSError, python: str | None = None) -> str:
    """A sentence for an "Operation not permitted" reading a project folder (empty for anything else)."""
    if exc.errno != errno.EPERM:
        return ""
    binary = os.path.realpath(python or sys.executable)
    return (
        " (Operation not permitted: macOS keeps programs launchd starts out of ~/Documents, ~/Desktop and "
        f"iCloud Drive unless they have Full Disk Access. Give it to {binary} in System Settings > Privacy & "
        "Security > Full Disk Access (again after an upgrade replaces that file), or keep the project in "
        "another folder, e.g. ~/Projects)"
    )
