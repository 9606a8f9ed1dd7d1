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

from .config import Config
from .errors import Mm4Error
from .fsutil import dropping_excludes
from .names import join, quote

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

    def line(self, total: int) -> str:
        if not self.sent:
            return f"earlier results: {total} run folder(s) visible, nothing new to send"
        return (
            f"earlier results: sent {len(self.sent)} new run folder(s) ({self.bytes_sent / 1e6:.1f} MB) "
            f"in {self.seconds:.2f}s; {total} visible"
        )


def remote_dir(cfg: Config, base: str) -> str:
    """Where a project's mirror lives under ``base`` on the far side: one per project (by path)."""
    import hashlib

    from .names import slug

    digest = hashlib.sha256(str(cfg.root).encode()).hexdigest()[:8]
    return f"{base.rstrip('/')}/{slug(cfg.root.name) or 'project'}-{digest}/results"


def choose(cfg: Config, needs: tuple[str, ...]) -> Inputs:
    """Which earlier runs a run should see."""
    from .store import History

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
    from . import proc, ssh

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
    if not missing:
        return Pushed((), 0, time.monotonic() - started, absolute)
    files = "".join(f"{run}/\n" for run in missing).encode("utf-8", "surrogateescape")
    done = proc.run(
        [
            "rsync",
            "-a",
            "-r",
            "--stats",
            "--files-from=-",
            "--chmod=Fa-w",
            *dropping_excludes(),
            "-e",
            target.rsync_shell(),
            f"{results_dir}/",
            f"{target.destination}:{absolute}/{INCOMING}/",
        ],
        input=files,
        timeout=timeout,
    )
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
    )


def bytes_sent(stats: str) -> int:
    """``Total bytes sent: 1,234`` from rsync's --stats (0 when absent)."""
    match = re.search(r"Total bytes sent:\s*([\d,.]+)", stats)
    return int(re.sub(r"[,.]", "", match.group(1))) if match else 0
