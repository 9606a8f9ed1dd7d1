"""Earlier results, visible read-only inside remote runs: a bounded copy of result folders on the far side.

The numbered-notebook workflow loads what an earlier notebook wrote
(``latest_run("23_train_model")``, or ``sorted(Path("../results").glob(...))[-1]``).
What is sent (``[run] results_mirror``):

- ``"latest"`` (the default): the newest successful run of each notebook (what
  ``latest_run()`` returns) and its newest ended run (what ``sorted(glob)[-1]`` picks),
  plus what a tag's ``needs=`` names;
- ``"needs"``: only what ``needs=`` names (the newest successful run of each);
- ``"all"``: every ended run (a tag's ``needs=`` then limits it to those);
- ``"none"``: nothing.

A result folder never changes once its run ended (but for the report's
``executed.html``, rendered later on this machine and never sent: no run reads
it), so the copy on the Mini only receives folders it lacks: one listing says
which it has, rsync sends the others (into ``.incoming/``, then moved in whole,
so a cut transfer never leaves half a folder that looks complete), and they are
made read-only. A folder there that no
longer matches this machine's is sent again (``_repair``). With every push goes an
index of all the project's ended runs (``INDEX``): a helper asked for a run that is
not there says which folder and what sends it, instead of answering with an older one.

The copy is bounded (``[run] mirror_max``, by default a quarter of the free disk
there plus what the copy holds): past it, the folders used least recently go
first, never one a run in progress uses (each push pins its folders under
``PINS`` until the run lets them go). A single folder larger than the bound is an
error before anything is sent. The docker executor mounts the copy read-only at
``<workdir>/results``; the native executor links it into the run's own folder.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import Config
from ..core.errors import Mm4Error
from ..core.fsutil import dropping_excludes, host_lock
from ..core.names import join, quote
from ..core.runenv import MIRROR_INDEX
from ..results.records import HTML_NAME

INCOMING = ".incoming"
INDEX = MIRROR_INDEX  # every ended run of the project: which exist, though not all are here (helpers read it)
NOT_SENT = (HTML_NAME,)  # files of a run folder's top never sent: the report's page of the run
PINS = ".pins"  # one file a run in progress, naming the folders it uses
PIN_MAX_AGE_MIN = 7 * 24 * 60  # a pin older than this was left by a run that never let go
DEFAULT_SHARE = 0.25  # of the free disk there (plus the copy itself), with no mirror_max


class MissingInput(Mm4Error):
    """A notebook named in ``needs=`` has no successful run to load."""


class MirrorTooBig(Mm4Error):
    """A run folder a run needs is larger than the bound of the copy on the far side."""


@dataclass(frozen=True)
class Inputs:
    """The earlier runs a run can see: what its record keeps as ``inputs``, and the index sent with them."""

    mode: str  # latest, all, needs, none
    runs: tuple[str, ...] = ()  # folders to make present there, oldest first
    needed: tuple[str, ...] = ()  # of those, what needs= names: sent whatever the bound, else an error
    index: dict[str, dict[str, Any]] = field(default_factory=dict)  # every ended run: notebook, status, parameters

    def to_record(self) -> dict[str, Any]:
        if self.mode == "needs":
            return {"mode": "needs", "runs": list(self.runs)}
        seen = {"mode": self.mode, "count": len(self.runs), "newest": self.runs[-1] if self.runs else None}
        return {**seen, "needs": list(self.needed)} if self.needed else seen


@dataclass(frozen=True)
class Pushed:
    sent: tuple[str, ...] = ()
    bytes_sent: int = 0
    seconds: float = 0.0
    remote_dir: str = ""
    repaired: tuple[str, ...] = ()  # folders there that no longer matched this machine's
    visible: int = 0  # the run's folders, present there
    evicted: tuple[str, ...] = ()  # folders removed there to stay within the bound
    held: int = 0  # bytes the copy holds after this push
    budget: int = 0  # its bound, bytes
    left: int = 0  # folders the run would have seen that did not fit within the bound

    def line(self) -> str:
        fixed = (
            f"; repaired {len(self.repaired)} run folder(s) that no longer matched this machine's "
            f"({', '.join(self.repaired[:3])}{', ...' if len(self.repaired) > 3 else ''})"
            if self.repaired
            else ""
        )
        bound = f"; the copy there holds {self.held / 1e6:.1f} MB of at most {self.budget / 1e6:.1f} MB"
        if self.evicted:
            bound += f" (removed {len(self.evicted)} folder(s) used least lately: {', '.join(self.evicted[:3])}"
            bound += ", ...)" if len(self.evicted) > 3 else ")"
        if self.left:
            bound += f"; {self.left} older folder(s) not sent, to stay within it"
        if not self.sent:
            return f"earlier results: {self.visible} run folder(s) visible, nothing new to send{fixed}{bound}"
        return (
            f"earlier results: sent {len(self.sent)} new run folder(s) ({self.bytes_sent / 1e6:.1f} MB) "
            f"in {self.seconds:.2f}s; {self.visible} visible{fixed}{bound}"
        )


def remote_dir(cfg: Config, base: str) -> str:
    """Where a project's copy lives under ``base`` on the far side: one per project (by path)."""
    return f"{base.rstrip('/')}/{cfg.project_key}/results"


def choose(cfg: Config, needs: tuple[str, ...]) -> Inputs:
    """Which earlier runs a run should see; a needed one missing, or larger than ``mirror_max``, is an error now."""
    from ..results.store import History

    setting = cfg.run.results_mirror
    mode = "needs" if needs and setting in ("all", "needs", "none") else setting
    if mode == "none":
        return Inputs("none")
    history = History(cfg.results_dir, cfg.state_dir)
    ended = [r for r in history.query() if r.is_final]  # newest first
    index = {r.id: {"notebook": r.notebook, "status": r.status, "parameters": r.parameters, "at": r.queued_at}
             for r in ended}  # fmt: skip
    picked: list[str] = []
    picked_needs: list[str] = []
    for name in needs:
        found = history.query(notebook=name, status="succeeded", limit=1)
        if not found:
            raise MissingInput(
                f"needs={name}: no successful run of {Path(name).stem!r} in {cfg.results_dir}; "
                f"run that notebook first (mm4watch run notebooks/{Path(name).stem}.ipynb), "
                "or drop it from needs="
            )
        picked.append(found[0].id)
        picked_needs.append(found[0].id)
    if mode == "all":
        picked = [r.id for r in reversed(ended)]
    elif mode == "latest":
        newest: dict[str, str] = {}
        for r in ended:  # newest first: the first seen of each notebook wins
            newest.setdefault(r.notebook, r.id)
            if r.status == "succeeded":
                newest.setdefault(r.notebook + "\0ok", r.id)
        picked += list(newest.values())
    runs = tuple(sorted(set(picked), key=lambda run: (index.get(run, {}).get("at", ""), run)))
    budget = cfg.run.mirror_max
    if budget is not None:
        for run in picked_needs:
            size = folder_bytes(cfg.results_dir / run)
            if size > budget:
                raise MirrorTooBig(too_big(cfg.results_dir / run, size, budget, "[run] mirror_max"))
    return Inputs(mode, runs, tuple(sorted(set(picked_needs))), index)


def too_big(folder: Path, size: int, budget: int, what: str) -> str:
    return (
        f"{folder} is {size / 1e6:.1f} MB, more than the copy of earlier results may hold on that machine "
        f"({what}: {budget / 1e6:.1f} MB); raise [run] mirror_max in mm4.toml, free disk there, or keep large "
        "files out of run folders the notebooks after it load"
    )


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (what rsync sends of it)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            if name in NOT_SENT and root == str(folder):
                continue
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(root, name)):
                total += st.st_size
    return total


def push(target: Any, cfg: Config, remote_dir: str, inputs: Inputs, pin: str, timeout: float = 3600) -> Pushed:
    """Make ``inputs.runs`` present in ``remote_dir`` on ``target``, within the copy's bound, pinned
    for the run ``pin`` (a run key) until ``unpin``.

    Runs going at once (a daemon with ``concurrency`` > 1) push to the same folder: one
    push at a time per machine and folder (a lock here), so none moves in what another
    is still sending, nor removes what another has just pinned."""
    import fcntl

    with open(host_lock("mirror", f"{target.label}\0{remote_dir}"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _push(target, cfg, remote_dir, inputs, pin, timeout)


def unpin(target: Any, remote_dir: str, pin: str) -> None:
    """The run ``pin`` has ended: its folders may go when the copy needs room."""
    from . import ssh

    ssh.run(target, f"rm -f {quote(f'{remote_dir}/{PINS}/{pin}')}", timeout=60)


@dataclass(frozen=True)
class There:
    absolute: str
    free: int  # bytes free on that file system
    by_use: list[str]  # the folders there, least recently used last
    sizes: dict[str, int]
    pinned: set[str]

    @property
    def held(self) -> int:
        """Bytes the copy holds there."""
        return sum(self.sizes.get(name, 0) for name in self.by_use)


def _look(target: Any, remote_dir: str) -> There:
    from . import ssh

    ours = join(["mkdir", "-p", f"{remote_dir}/{INCOMING}", f"{remote_dir}/{PINS}"])
    out = ssh.run(
        target,
        f"{ours} && cd {quote(remote_dir)} && pwd && df -Pk . | tail -1 && echo @@ && ls -1At && echo @@ && "
        f"{{ du -sk -- * .[!.]* 2>/dev/null; true; }} && echo @@ && "
        f"{{ find {PINS} -type f -mmin -{PIN_MAX_AGE_MIN} -exec cat {{}} + 2>/dev/null; true; }}",
        timeout=120,
    ).stdout.decode("utf-8", "surrogateescape")
    head, listing, sizes, pins = (out.split("@@\n") + ["", "", ""])[:4]
    absolute, _, df = head.partition("\n")
    fields = df.split()
    skip = {INCOMING, PINS, INDEX}
    found = {}
    for line in sizes.splitlines():
        kb, _, name = line.partition("\t")
        if name and kb.isdigit():
            found[name] = int(kb) * 1024
    return There(
        absolute=absolute.strip(),
        free=int(fields[3]) * 1024 if len(fields) > 3 and fields[3].isdigit() else 0,
        by_use=[name for name in listing.splitlines() if name and name not in skip],
        sizes={name: size for name, size in found.items() if name not in skip},
        pinned=set(pins.splitlines()),
    )


def _push(target: Any, cfg: Config, remote_dir: str, inputs: Inputs, pin: str, timeout: float) -> Pushed:
    from . import ssh

    started = time.monotonic()
    results_dir = cfg.results_dir
    there = _look(target, remote_dir)
    absolute, present = there.absolute, set(there.by_use)
    held = there.held
    budget, what = bound(cfg, there.free, held)
    sizes: dict[str, int] = {}

    def size(run: str) -> int:  # there, as du counted it; else (not there, or not listed) this machine's
        if run not in sizes:
            sizes[run] = there.sizes[run] if run in there.sizes else folder_bytes(results_dir / run)
        return sizes[run]

    # what this run gets: what needs= names (it must fit), then the newest of the rest while they fit;
    # the rest stays here (the index tells the run so, should it ask for one)
    wanted = [run for run in inputs.runs if run in present or (results_dir / run).is_dir()]
    needed = [run for run in wanted if run in inputs.needed]
    room = budget - sum(there.sizes.get(name, 0) for name in there.pinned if name in present and name not in wanted)
    runs: list[str] = []
    for run in [*needed, *reversed([run for run in wanted if run not in inputs.needed])]:
        bytes_ = size(run)
        if run in inputs.needed and bytes_ > budget:
            raise MirrorTooBig(too_big(results_dir / run, bytes_, budget, what))
        if bytes_ <= room or run in inputs.needed:
            runs.append(run)
            room -= bytes_
    left = len(wanted) - len(runs)
    missing = [run for run in runs if run not in present]
    local = {run: size(run) for run in missing}
    # room first: the folders used least lately go, never one this run or a run in progress uses
    incoming = sum(local.values())
    evicted = _evict(target, there, set(runs), incoming, budget)
    held -= sum(there.sizes.get(name, 0) for name in evicted)
    repaired = _repair(target, results_dir, absolute, [run for run in runs if run in present], timeout)
    sent_bytes = 0
    if missing:
        done = _rsync(target, results_dir, f"{absolute}/{INCOMING}", missing, ["--stats"], timeout)
        sent_bytes = bytes_sent(done.stdout.decode(errors="replace"))
        # whole folders only: moved in once complete, then read-only (a few processes, not one per folder)
        for start in range(0, len(missing), 500):
            batch = missing[start : start + 500]
            ssh.run(
                target,
                f"cd {quote(absolute + '/' + INCOMING)} && {join(['mv', '-f', '--', *batch, absolute])} && "
                f"cd {quote(absolute)} && {join(['chmod', '-R', 'a-w', '--', *batch])}",
                timeout=300,
            )
    # the run's pin, its folders marked used now (least recently used goes first), and the index
    here = [run for run in runs if run in present or run in local]
    index = json.dumps({"project": project_of(cfg), "setting": inputs.mode, "runs": inputs.index}).encode()
    pin_file = f"{PINS}/{pin}"
    one_a_line = join(["printf", "%s\\n", *here])
    ssh.run(
        target,
        f"cd {quote(absolute)} && {one_a_line} > {quote(pin_file)} && "
        + (f"{join(['touch', '-c', '--', *here])} && " if here else "")
        + f"cat > {INCOMING}/index.json && mv -f {INCOMING}/index.json {INDEX}",
        input=index,
        timeout=120,
    )
    return Pushed(
        sent=tuple(missing),
        bytes_sent=sent_bytes,
        seconds=time.monotonic() - started,
        remote_dir=absolute,
        repaired=repaired,
        visible=len(here),
        evicted=tuple(evicted),
        held=held + incoming,
        budget=budget,
        left=left,
    )


def _evict(target: Any, there: There, needed: set[str], incoming: int, budget: int) -> list[str]:
    """Remove the folders used least lately until what is there and ``incoming`` fit in ``budget``;
    never one in ``needed`` or pinned by a run in progress."""
    from . import ssh

    evicted = to_evict(there, needed, incoming, budget)
    if evicted:
        quoted = join(["--", *evicted])
        ssh.run(target, f"cd {quote(there.absolute)} && chmod -R u+w {quoted} && rm -rf {quoted}", timeout=600)
    return evicted


def to_evict(there: There, needed: set[str], incoming: int, budget: int) -> list[str]:
    """Which folders go (pure): the least recently used first, until the rest and ``incoming`` fit."""
    held = there.held
    keep = needed | there.pinned
    evicted = []
    for name in reversed(there.by_use):
        if held + incoming <= budget:
            break
        if name in keep:
            continue
        evicted.append(name)
        held -= there.sizes.get(name, 0)
    return evicted


def bound(cfg: Config, free: int, held: int) -> tuple[int, str]:
    """The most a project's copy may hold there, and where that figure comes from: ``[run] mirror_max``,
    else ``DEFAULT_SHARE`` of the free disk and what the copy holds (``held``)."""
    if cfg.run.mirror_max is not None:
        return cfg.run.mirror_max, "[run] mirror_max"
    return int(DEFAULT_SHARE * (free + held)), f"a quarter of the {free / 1e9:.1f} GB free there and the copy"


def trim(target: Any, cfg: Config, remote_dir: str) -> tuple[list[str], int, int]:
    """Bring this project's copy within its bound now (``gc``): (folders removed, bytes held, bound)."""
    there = _look(target, remote_dir)
    budget, _ = bound(cfg, there.free, there.held)
    evicted = _evict(target, there, set(), 0, budget)
    held = sum(there.sizes.get(name, 0) for name in there.by_use if name not in evicted)
    return evicted, held, budget


def project_of(cfg: Config) -> dict[str, Any]:
    """Whose copy this is: the path, and the repository's first commit (the same project at another path)."""
    from ..core import git

    return {"root": str(cfg.root), "name": cfg.root.name, "first_commit": git.first_commit(cfg.root)}


def _rsync(target: Any, results_dir: Path, dest: str, runs: list[str], extra: list[str], timeout: float) -> Any:
    """rsync the run folders ``runs`` of ``results_dir`` into ``dest`` there, their files read-only."""
    from ..core import proc

    files = "".join(f"{run}/\0" for run in runs).encode("utf-8", "surrogateescape")  # any name: NUL-separated
    return proc.run(
        [
            "rsync", "-a", "-r", "--files-from=-", "--from0", "--chmod=Fa-w", *dropping_excludes(),
            *(f"--exclude=/*/{name}" for name in NOT_SENT), *extra,
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
