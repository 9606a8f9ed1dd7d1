"""Keeping the Mini awake while it runs something: macOS's ``caffeinate``, over ssh.

A Mac idle-sleeps after a while without a user at it, however busy its CPU
is, unless a process holds a power assertion; a multi-hour run on a headless
Mini would stop mid-run. While a run is on the Mini, ``caffeinate -i`` holds
the "prevent idle sleep" assertion. On a machine without ``/usr/bin/caffeinate``
(Linux) the shell below does nothing. Each function returns shell text for
``/bin/sh`` that prints ``AWAKE`` when it holds one: for a container's run (a
native run's runner is held by the far side itself: ``far.there.start``).
"""

from __future__ import annotations

from ..core.names import quote

CAFFEINATE = "/usr/bin/caffeinate"
HELD = "AWAKE"


def for_seconds(seconds: float, pid_file: str) -> str:
    """Hold the assertion for ``seconds`` at most (a run's timeout), its pid in ``pid_file`` for
    ``let_go``: for a run the Mini has no process of its own for (a container in Docker's VM)."""
    f = quote(pid_file)
    return (
        f'if [ -x {CAFFEINATE} ]; then mkdir -p "$(dirname {f})" && {{ kill $(cat {f} 2>/dev/null) 2>/dev/null; '
        f"{CAFFEINATE} -i -t {int(seconds) + 60} >/dev/null 2>&1 </dev/null & echo $! > {f}; }} && echo {HELD}; fi"
    )


def let_go(pid_file: str) -> str:
    f = quote(pid_file)
    return f"if [ -f {f} ]; then kill $(cat {f}) 2>/dev/null; rm -f {f}; fi; true"
