"""Earlier results, visible read-only inside remote runs: a mirror of result folders on the far side.

The numbered-notebook workflow loads what an earlier notebook wrote
(``latest_run("23_train_model")``, or ``sorted(Path("../results").glob(...))``).
A result folder never changes once its run ended, so the mirror on the Mini
only ever receives new folders: one ``ls`` says which it has, rsync sends the
others (into ``.incoming/``, then moved in whole, so a cut transfer never
leaves half a folder that looks complete), and they are made read-only. The
docker executor mounts the mirror read-only at ``<workdir>/results``; the
native executor links it into the run's own folder.

What is sent: ``[run] results_mirror = "all"`` (every ended run), ``"needs"``
(only what a tag's ``needs=`` names: the latest successful run of each), or
``"none"``. A tag's ``needs=`` always limits it to those.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import Config
from ..core.errors import Mm4Error
from ..core.fsutil import dropping_excludes
from ..core.names import join, quote

INCOMING = ".incoming"


class MissingInput(Mm4Error):
    """A notebook named in ``needs=`` has no successful run to load."""


@dataclass(frozen=True)
class Inputs:
    """The earlier runs a run can see: what its record keeps as ``inputs``."""

    mode: str  # all, needs, none
    runs: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        if self.mode == "needs":
            return {"mode": "needs", "runs": list(self.runs)}
        return {"mode": self.mode, "count": len(self.runs), "newest": self.runs[-1] if self.runs else None}


@dataclass(frozen=True)
class Pushed:
    sent: tuple[str, ...] = ()
    bytes_sent: int = 0
    seconds: float = 0.0
    remote_dir: str = ""
    repaired: tuple[str, ...] = ()  # folders there that no longer matched this machine's

    def line(self, total: int) -> str:
        fixed = (
            f"; repaired {len(self.repaired)} run folder(s) that no longer matched this machine's "
            f"({', '.join(self.repaired[:3])}{', ...' if len(self.repaired) > 3 else ''})"
            if self.repaired
            else ""
        )
        if not self.sent:
            return f"earlier results: {total} run folder(s) visible, nothing new to send{fixed}"
        return (
            f"earlier results: sent {len(self.sent)} new run folder(s) ({self.bytes_sent / 1e6:.1f} MB) "
            f"in {self.seconds:.2f}s; {total} visible{fixed}"
        )


def remote_dir(cfg: Config, base: str) -> str:
    """Where a project's mirror lives under ``base`` on the far side: one per project (by path)."""
    return f"{base.rstrip('/')}/{cfg.project_key}/results"


def choose(cfg: Config, needs: tuple[str, ...]) -> Inputs:
    """Which earlier runs a run should see."""
    from ..results.store import History

    mode = "needs" if needs else cfg.run.results_mirror
    if mode == "none":
        return Inputs("none")
    history = History(cfg.results_dir, cfg.state_dir)
    if mode == "needs":
        picked = []
        for name in needs:
            found = history.query(notebook=name, status="succeeded", limit=1)
            if not found:
                raise MissingInput(
                    f"needs={name}: no successful run of {Path(name).stem!r} in {cfg.results_dir}; "
                    f"run that notebook first (mm4watch run notebooks/{Path(name).stem}.ipynb), "
                    "or drop it from needs="
                )
            picked.append(found[0].id)
        return Inputs("needs", tuple(picked))
    return Inputs("all", tuple(history.ended()))


def push(target: Any, results_dir: Path, remote_dir: str, runs: tuple[str, ...], timeout: float = 3600) -> Pushed:
    """Make ``runs`` (folder names under ``results_dir``) present in ``remote_dir`` on ``target``.

    Runs going at once (a daemon with ``concurrency`` > 1) push to the same folder: one
    push at a time per machine and folder (a lock here), so none moves in what another
    is still sending."""
    import fcntl
    import hashlib
    import tempfile

    key = hashlib.sha256(f"{target.label}\0{remote_dir}".encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"mm4-mirror-{os.getuid()}-{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _push(target, results_dir, remote_dir, runs, timeout)


def _push(target: Any, results_dir: Path, remote_dir: str, runs: tuple[str, ...], timeout: float) -> Pushed:
    from . import ssh

    started = time.monotonic()
    listing = (
        ssh.run(
            target,
            f"{join(['mkdir', '-p', remote_dir + '/' + INCOMING])} && cd {quote(remote_dir)} && pwd && ls -1A",
            timeout=60,
        )
        .stdout.decode("utf-8", "surrogateescape")
        .splitlines()
    )
    absolute, present = listing[0], set(listing[1:])
    missing = [run for run in runs if run not in present and (results_dir / run).is_dir()]
    repaired = _repair(target, results_dir, absolute, [run for run in runs if run in present], timeout)
    if not missing:
        return Pushed((), 0, time.monotonic() - started, absolute, repaired)
    done = _rsync(target, results_dir, f"{absolute}/{INCOMING}", missing, ["--stats"], timeout)
    # whole folders only: moved in once complete, then read-only (a few processes, not one per folder)
    for start in range(0, len(missing), 500):
        batch = missing[start : start + 500]
        ssh.run(
            target,
            f"cd {quote(absolute + '/' + INCOMING)} && {join(['mv', '-f', '--', *batch, absolute])} && "
            f"cd {quote(absolute)} && {join(['chmod', '-R', 'a-w', '--', *batch])}",
            timeout=300,
        )
    return Pushed(
        tuple(missing),
        bytes_sent(done.stdout.decode(errors="replace")),
        time.monotonic() - started,
        absolute,
        repaired,
    )


def _rsync(target: Any, results_dir: Path, dest: str, runs: list[str], extra: list[str], timeout: float) -> Any:
    """rsync the run folders ``runs`` of ``results_dir`` into ``dest`` there, their files read-only."""
    from ..core import proc

    files = "".join(f"{run}/\n" for run in runs).encode("utf-8", "surrogateescape")
    return proc.run(
        [
            "rsync", "-a", "-r", "--files-from=-", "--chmod=Fa-w", *dropping_excludes(), *extra,
            "-e", target.rsync_shell(), f"{results_dir}/", f"{target.destination}:{dest}/",
        ],
        input=files,
        timeout=timeout,
    )  # fmt: skip


def _repair(target: Any, results_dir: Path, absolute: str, present: list[str], timeout: float) -> tuple[str, ...]:
    """Folders there whose files no longer match this machine's (size and mtime; a file added or
    removed), sent again whole: a run folder never changes, so a difference is damage (a write by
    root, whom modes do not stop), and the mirror only ever adds folders, so it would stay."""
    from . import ssh

    if not present:
        return ()
    # modes and owners differ by design (read-only there); folder times change with every move in
    same = ["--no-perms", "--no-owner", "--no-group", "--omit-dir-times", "--delete"]
    listed = _rsync(target, results_dir, absolute, present, ["--dry-run", "--itemize-changes", *same], timeout)
    changed = sorted(
        {
            line.split(None, 1)[1].split("/", 1)[0]
            for line in listed.stdout.decode("utf-8", "surrogateescape").splitlines()
            if len(line.split(None, 1)) == 2
        }
        & set(present)
    )
    if not changed:
        return ()
    quoted = join(["--", *changed])
    # what another user (root) left there may refuse the mode change; rsync replaces or removes it
    ssh.run(target, f"cd {quote(absolute)} && {{ chmod -R u+w {quoted} 2>/dev/null; true; }}", timeout=300)
    _rsync(target, results_dir, absolute, changed, same, timeout)
    ssh.run(target, f"cd {quote(absolute)} && chmod -R a-w {quoted}", timeout=300)
    return tuple(changed)


def bytes_sent(stats: str) -> int:
    """``Total bytes sent: 1,234`` from rsync's --stats (0 when absent)."""
    match = re.search(r"Total bytes sent:\s*([\d,.]+)", stats)
    return int(re.sub(r"[,.]", "", match.group(1))) if match else 0
