"""Steps a run's machine takes for mm4watch, in Python: the native executor calls them over ssh as
``python3 -m mm4watch.far.there STEP --arg value ...`` (the far side on ``PYTHONPATH``), each
answering with one line of JSON. Arguments travel, never shell programs.

Part of the far side (``executors.far_side.FAR_SIDE``): Python 3.9 and newer, standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PIN_NAME = ".mm4-venv"  # in a run's folder there: the environment it runs in, never pruned under it
READY_NAME = ".ready"  # in an environment: it was built whole
PROBE_NAME = "env.json"  # in an environment: what its interpreter said of itself
REQUIREMENTS_NAME = "requirements.in"  # in an environment: the requirements.txt it was built from


def pinned(runs: Path) -> set[str]:
    """The environments the runs still on this machine name (``runs/<key>/.mm4-venv``)."""
    names = set()
    for pin in runs.glob(f"*/{PIN_NAME}"):
        try:
            names.add(pin.read_text().strip())
        except OSError:
            continue  # a run ending meanwhile
    return names


def newest_first(folder: Path) -> list[Path]:
    """The folders in ``folder``, the most recently changed first (as ``ls -t``)."""
    found = []
    for entry in folder.iterdir() if folder.is_dir() else ():
        try:
            if entry.is_dir() and not entry.is_symlink():
                found.append((entry.stat().st_mtime, entry.name, entry))
        except OSError:
            continue
    return [path for _, _, path in sorted(found, key=lambda t: (t[0], t[1]), reverse=True)]


def prune(venvs: Path, key: str, keep: int, keep_also: set[str]) -> list[str]:
    """Environments beyond the newest ``keep`` (``key``, the one this run uses, counted among them),
    removed, except those in ``keep_also`` (pinned by a run still there). The names removed."""
    others = [path for path in newest_first(venvs) if path.name != key]
    removed = []
    for path in others[max(0, keep - 1) :]:
        if path.name in keep_also:
            continue
        remove_tree(path)
        removed.append(path.name)
    return removed


def remove_tree(path: Path) -> None:
    """``rm -rf``: read-only folders inside (a package's) made writable on the way."""

    def writable_then_again(function: Callable[..., Any], name: str, _: Any) -> None:
        try:
            os.chmod(os.path.dirname(name), stat.S_IRWXU)
            os.chmod(name, stat.S_IRWXU)
        except OSError:
            pass
        try:
            function(name)
        except FileNotFoundError:
            pass

    handler = "onexc" if sys.version_info >= (3, 12) else "onerror"  # onerror is deprecated from 3.12
    options: dict[str, Any] = {handler: writable_then_again}
    shutil.rmtree(path, **options)


def read_ready(venv: Path) -> dict[str, Any] | None:
    """What a whole environment's interpreter said of itself; None when it is not there or half-built."""
    try:
        if not (venv / READY_NAME).is_file():
            return None
        said = json.loads((venv / PROBE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return said if isinstance(said, dict) else None


def earlier_requirements(venvs: Path) -> str | None:
    """The requirements.txt the newest whole environment here was built from (its packages are in the
    machine's uv cache); None when there is none."""
    for venv in newest_first(venvs):
        if (venv / READY_NAME).is_file():
            try:
                return (venv / REQUIREMENTS_NAME).read_text()
            except OSError:
                continue
    return None


def environment(base: str, key: str, keep: int, run: str) -> dict[str, Any]:
    """Before a run: pin environment ``key`` for run ``run``, prune the others past ``keep`` (pinned
    ones stay), and say whether ``key`` is ready (``ready``: what its interpreter said) or, when it is
    not, what the newest one was built from (``earlier``)."""
    root = Path(base)
    venvs = root / "venvs"
    venvs.mkdir(parents=True, exist_ok=True)
    run_dir = root / "runs" / run
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / PIN_NAME).write_text(key + "\n")
    removed = prune(venvs, key, keep, pinned(root / "runs"))
    ready = read_ready(venvs / key)
    if ready is not None:
        return {"ready": ready, "removed": removed}
    return {"ready": None, "earlier": earlier_requirements(venvs), "removed": removed}


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs: there, and not a zombie nobody reaped (``kill -0`` alone
    would count one; a machine whose first process does not reap orphans keeps them)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's: it is there
    return not zombie(pid)


def zombie(pid: int) -> bool:
    """Whether ``pid`` has ended and waits to be reaped (Linux's /proc, else ``ps``: a Mac's)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        pass
    try:
        said = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return said.stdout.strip().startswith("Z")


def read_pid(run: Path) -> int | None:
    try:
        return int((run / "pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def boot_time() -> float | None:
    """When this machine last started: a Mac's ``sysctl kern.boottime``, else Linux's /proc/stat."""
    try:
        said = subprocess.run(["sysctl", "-n", "kern.boottime"], capture_output=True, text=True, timeout=10).stdout
        found = re.search(r"sec = (\d+)", said)
        if found:
            return float(found.group(1))
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def state(run: str, result: str) -> dict[str, Any]:
    """A run's state after its machine answered again: its ``result`` written, its runner alive, and
    when the machine last started (a restart ended the run with it)."""
    pid = read_pid(Path(run))
    return {"result": Path(result).is_file(), "alive": pid is not None and alive(pid), "boot": boot_time()}


def found(run: str) -> dict[str, Any]:
    """A run to follow again: whether it started (its pid written) and how much of its log there is."""
    folder = Path(run)
    try:
        size = (folder / "run.log").stat().st_size
    except OSError:
        size = 0
    return {"started": (folder / "pid").is_file(), "log_bytes": size}


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (``ps``, a Mac's and Linux's alike), deepest first."""
    listed = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True, timeout=30)
    children: dict[int, list[int]] = {}
    for line in listed.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            children.setdefault(int(parts[1]), []).append(int(parts[0]))
    below: list[int] = []

    def walk(parent: int) -> None:
        for child in children.get(parent, []):
            walk(child)
            below.append(child)

    walk(pid)
    return below


def stop(run: str, grace: float) -> dict[str, Any]:
    """TERM the run's runner (papermill saves what ran), wait up to ``grace`` seconds for it to end,
    then KILL what was below it (the kernel) and it."""
    pid = read_pid(Path(run))
    if pid is None:
        return {"stopped": None}
    tree = descendants(pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    for each in [*tree, pid]:
        try:
            os.kill(each, signal.SIGKILL)
        except OSError:
            pass
    return {"stopped": pid, "below": len(tree)}


def code(base: str, run: str, digest: str, incoming: bool = False) -> dict[str, Any]:
    """The project's code for run ``run``: the copy under ``base/code`` brought to ``digest`` and copied
    for this run alone (``runs/<run>/code``). Without ``incoming``: copied when the copy there is at
    ``digest`` already (``copied``: false when it is not: send it). With ``incoming``: the gzip'd tar
    on stdin becomes that copy first (made beside it, then put in its place)."""
    root = Path(base)
    there, mine = root / "code", root / "runs" / run / "code"
    mark = ".mm4-digest"
    if not incoming:
        try:
            same = (there / mark).read_text().strip() == digest
        except OSError:
            same = False
        if not same:
            return {"copied": False}
    else:
        fresh = root / "code.new"
        if fresh.exists():
            remove_tree(fresh)
        fresh.mkdir(parents=True)
        files = untar(sys.stdin.buffer, fresh)
        (fresh / mark).write_text(digest + "\n")
        if there.exists():
            remove_tree(there)
        fresh.rename(there)
    mine.parent.mkdir(parents=True, exist_ok=True)
    if mine.exists():
        remove_tree(mine)
    shutil.copytree(there, mine, symlinks=True)
    return {"copied": True, **({"files": files} if incoming else {})}


def untar(stream: Any, into: Path) -> int:
    """A gzip'd tar from ``stream`` into ``into``; a member that would land outside it (an absolute
    path, ``..``, a link out) or is not a file, folder or link is refused. How many files came."""
    import tarfile

    files = 0
    # each member is checked here: the extraction filter Python 3.12 brings is told so (else it warns)
    checked: dict[str, Any] = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(fileobj=stream, mode="r|gz") as tar:
        for member in tar:
            target = (into / member.name).resolve()
            inside = target == into.resolve() or into.resolve() in target.parents
            if member.name.startswith("/") or ".." in Path(member.name).parts or not inside:
                raise ValueError(f"refused: {member.name!r} would land outside {into}")
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                raise ValueError(f"refused: {member.name!r} is not a file, folder or link")
            if (member.issym() or member.islnk()) and (
                member.linkname.startswith("/") or ".." in Path(member.linkname).parts
            ):
                raise ValueError(f"refused: {member.name!r} links out of the project ({member.linkname})")
            member.uid = member.gid = os.getuid()
            member.uname = member.gname = ""
            tar.extract(member, into, set_attrs=not member.issym(), **checked)
            files += member.isfile()
    return files


STEPS: dict[str, Callable[..., dict[str, Any]]] = {
    "code": code,
    "environment": environment,
    "state": state,
    "found": found,
    "stop": stop,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m mm4watch.far.there")
    sub = parser.add_subparsers(dest="step", required=True)
    env = sub.add_parser("environment")
    env.add_argument("--base", required=True)
    env.add_argument("--key", required=True)
    env.add_argument("--keep", type=int, required=True)
    env.add_argument("--run", required=True)
    put = sub.add_parser("code")
    for name in ("--base", "--run", "--digest"):
        put.add_argument(name, required=True)
    put.add_argument("--incoming", action="store_true")
    for name in ("state", "found", "stop"):
        sub.add_parser(name).add_argument("--run", required=True)
    sub.choices["state"].add_argument("--result", required=True)
    sub.choices["stop"].add_argument("--grace", type=float, default=10.0)
    args = vars(parser.parse_args(argv))
    step = STEPS[args.pop("step")]
    try:
        said = step(**args)
    except (OSError, ValueError) as exc:  # said as data: the asker words it (``error``)
        said = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(said))
    return 0


if __name__ == "__main__":
    sys.exit(main())
