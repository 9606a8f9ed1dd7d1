"""What ``doctor`` and ``gc`` share: the checkup printed step by step (ok, warn, FAIL with its
fix), and the checks and trimming of another machine (ssh, kept awake, the copies of earlier
results there)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core.config import Config
from ..core.errors import Mm4Error

if TYPE_CHECKING:
    from ..remote.ssh import Target

MIN_FREE_GB = 10


class Checkup:
    """What ``doctor`` prints: each check ok, warn or FAIL with its fix; counts the failures."""

    def __init__(self, say: Callable[[str], None] = print) -> None:
        self.failed = 0
        self.say = say

    def ok(self, what: str, detail: str = "") -> None:
        self.say(f"ok    {what}" + (f": {detail}" if detail else ""))

    def warn(self, what: str, detail: str) -> None:
        self.say(f"warn  {what}: {detail}")

    def fail(self, what: str, detail: str, fix: str) -> None:
        self.failed += 1
        self.say(f"FAIL  {what}: {detail}\n      fix: {fix}")

    def check(self, what: str, step: Callable[[], str], fix: str) -> bool:
        try:
            self.ok(what, step())
            return True
        except Mm4Error as exc:
            self.fail(what, str(exc), fix)
            return False


def check_ssh(report: Checkup, target: Target) -> bool:
    """doctor: ``target`` answers over ssh without a prompt."""
    from ..remote import ssh

    def reach() -> str:
        t0 = time.monotonic()
        ssh.run(target, "true", timeout=20)
        return f"{target.label} answers in {time.monotonic() - t0:.2f}s"

    return report.check(
        "ssh",
        reach,
        f"make `{target.hint}` work without a prompt: a key in ssh-agent, "
        "or Host/User/Port/IdentityFile in ~/.ssh/config (or ssh_options in mm4.toml)",
    )


def check_awake(report: Checkup, target: Target) -> None:
    """doctor: whether that machine can be kept from idle sleep while a run is there."""
    from ..remote import awake, ssh

    held = ssh.run(target, f"test -x {awake.CAFFEINATE} && echo yes || true", timeout=30).stdout.decode().strip()
    if held == "yes":
        report.ok("awake", f"{awake.CAFFEINATE} holds off idle sleep while a run is there")
    else:
        report.warn("awake", f"no {awake.CAFFEINATE} there (not a Mac?): nothing keeps it from sleeping mid-run")


def check_copies(report: Checkup, target: Target, config: Config, base: str) -> None:
    """doctor: each project's copy of earlier results under ``base`` there, its bound, the free disk."""
    from ..remote import copies, mirror

    found, free = copies.copies(target, base)
    mine = next((c for c in found if c.folder == f"{config.project_key}/results"), None)
    held = mine.bytes if mine else 0
    budget, how = mirror.bound(config, free, held)
    report.ok(
        "earlier results",
        f"this project's copy on {target.label} holds {held / 1e6:.1f} MB of at most {budget / 1e6:.1f} MB "
        f"({how}); {free / 1e9:.1f} GB free there",
    )
    if held > budget:
        report.warn("earlier results", "the copy is past its bound: `mm4watch gc` trims it (the next run does too)")
    old = copies.others_of(config, found)
    for c in found:
        if c is mine:
            continue
        whose = c.project.get("root") or "an unknown project"
        if c in old:
            report.warn(
                f"copy {c.folder}", f"{c.bytes / 1e6:.1f} MB, this project at {whose}: `mm4watch gc` removes it"
            )
        else:
            report.ok(f"copy {c.folder}", f"{c.bytes / 1e6:.1f} MB, of {whose}")


def gc_copies(target: Target, config: Config, base: str) -> list[str]:
    """gc: this project's copy of earlier results trimmed to its bound, the copies of its old paths removed."""
    from ..core.names import join
    from ..remote import copies, mirror, ssh

    lines = []
    evicted, held, budget = mirror.trim(target, config, mirror.remote_dir(config, base))
    lines.append(
        f"earlier results on {target.label}: removed {len(evicted)} folder(s) used least lately; "
        f"the copy holds {held / 1e6:.1f} MB of at most {budget / 1e6:.1f} MB"
    )
    found, _ = copies.copies(target, base)
    for c in copies.others_of(config, found):
        folder = f"{base.rstrip('/')}/{c.folder.rsplit('/', 1)[0]}"
        ssh.run(target, f"chmod -R u+w {join([folder])} && rm -rf {join([folder])}", timeout=600)
        lines.append(
            f"removed {folder} on {target.label}: this project's copy at {c.project.get('root')} ({c.bytes / 1e6:.1f} MB)"
        )
    return lines
