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
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.fsutil import remove_tree
from . import venvs


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


def poll(run: str, result: str, wait: float, offset: int) -> dict[str, Any]:
    """A run followed: wait up to ``wait`` seconds for it to end (its ``result`` written, or its runner
    gone: a zombie nobody reaps counts as gone), then say whether it ended and send its log from byte
    ``offset`` on (``bytes`` of it, right before the line of JSON)."""
    folder = Path(run)
    pid = read_pid(folder)
    deadline = time.monotonic() + wait

    def ended() -> bool:
        return Path(result).is_file() or pid is None or not alive(pid)

    while not ended() and time.monotonic() < deadline:
        time.sleep(0.1)
    done = ended()
    try:
        with open(folder / "run.log", "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except OSError:
        chunk = b""
    return {"ended": done, "bytes": len(chunk), RAW: chunk}


CAFFEINATE = "/usr/bin/caffeinate"  # a Mac's: holds off idle sleep while a process lives


def start(run: str, cwd: str, python: str, module: str, folders: str, links: str, env: str) -> dict[str, Any]:
    """A run started: its folder and ``folders`` (JSON) in it, the links its code gets (``links``: JSON,
    where -> what), the job (spec.json, the notebook: a gzip'd tar on stdin, each member checked)
    unpacked, then ``python -m module job/spec.json`` started in ``cwd`` on its own (its own session,
    every descriptor away from this one: it outlives the connection), the far side on its path and
    ``env`` (JSON) beside; its pid in ``pid``, and the Mac kept awake while it lives."""
    folder = Path(run)
    for made in ["job", *json.loads(folders)]:
        (folder / made).mkdir(parents=True, exist_ok=True)
    for where, what in json.loads(links).items():
        os.symlink(what, where)
    untar(sys.stdin.buffer, folder / "job")
    lib = str(Path(__file__).resolve().parents[2])  # the folder the far side was shipped to
    variables = {**os.environ, **json.loads(env), "PYTHONPATH": lib, "PYTHONUNBUFFERED": "1"}
    with open(folder / "run.log", "ab") as log, open(os.devnull, "rb") as nothing:
        runner = subprocess.Popen(
            [python, "-m", module, str(folder / "job" / "spec.json")],
            cwd=cwd, env=variables, stdin=nothing, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    (folder / "pid").write_text(f"{runner.pid}\n")
    awake = os.access(CAFFEINATE, os.X_OK)
    if awake:  # it lets go by itself when the runner ends, also when nobody is left to tell it
        with open(os.devnull, "r+b") as nothing:
            subprocess.Popen(
                [CAFFEINATE, "-i", "-w", str(runner.pid)], stdin=nothing, stdout=nothing, stderr=nothing,
                start_new_session=True,
            )  # fmt: skip
    return {"pid": runner.pid, "awake": awake}


RAW = "_raw"  # a step's bytes sent before its line of JSON (``bytes`` says how many)


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
    "build": venvs.build,
    "poll": poll,
    "start": start,
    "uv-gc": venvs.uv_gc,
    "code": code,
    "environment": venvs.environment,
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
    follow = sub.add_parser("poll")
    follow.add_argument("--run", required=True)
    follow.add_argument("--result", required=True)
    follow.add_argument("--wait", type=float, default=5.0)
    follow.add_argument("--offset", type=int, default=0)
    begin = sub.add_parser("start")
    for name in ("--run", "--cwd", "--python", "--module", "--folders", "--links", "--env"):
        begin.add_argument(name, required=True)
    build = sub.add_parser("build")
    for name in ("--base", "--key", "--requirements", "--lines"):
        build.add_argument(name, default="")
    gc = sub.add_parser("uv-gc")
    gc.add_argument("--tools", required=True)
    gc.add_argument("--bound", type=int, required=True)
    args = vars(parser.parse_args(argv))
    step = STEPS[args.pop("step")]
    try:
        said = step(**args)
    except (OSError, ValueError) as exc:  # said as data: the asker words it (``error``)
        said = {"error": f"{type(exc).__name__}: {exc}"}
    raw = said.pop(RAW, b"")
    sys.stdout.buffer.write(raw + b"\n" + json.dumps(said).encode() + b"\n")  # the line of JSON last
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
