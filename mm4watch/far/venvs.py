"""A native run's environments on its machine, in Python (steps of ``far.there``): a venv per key
(the hash of requirements.txt and the interpreter's version) under ``<base>/venvs``, pinned by the
runs that use it, the newest ``keep`` kept; built with uv (installed once into ``<workdir>/tools``,
one cache for every project there) or else pip; the uv cache trimmed.

Part of the far side (``executors.far_side.FAR_SIDE``): Python 3.9 and newer, standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..core.fsutil import remove_tree

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


UV_CACHE = "uv-cache"  # under <workdir>: one cache for every environment of every project there
# the system's certificates (the keychain on a Mac), under both of uv's names; never a Python uv would fetch
UV_ENV = {"UV_SYSTEM_CERTS": "1", "UV_NATIVE_TLS": "1", "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
ENV_PROBE = (
    "import json, platform, sys\n"
    "try:\n    import torch\n    mps = bool(torch.backends.mps.is_available())\nexcept Exception:\n    mps = None\n"
    "print(json.dumps({'python': sys.version.split()[0], 'platform': platform.platform(), 'mps': mps}))\n"
)
KERNEL = ["papermill", "ipykernel"]  # what every environment has beside the project's requirements


class Failed(Exception):
    """A command of a build failed: what it said is in the build's log."""


def _call(argv: list[str], log: list[str], timeout: float = 1800, env: dict[str, str] | None = None) -> None:
    """``argv`` run, what it said added to ``log``; Failed when it fails."""
    try:
        done = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, env={**os.environ, **(env or {})}
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.append(f"{argv[0]}: {exc}\n")
        raise Failed(f"{Path(argv[0]).name} did not run: {exc}") from None
    said = done.stdout.decode(errors="replace")
    log.append(said)
    if done.returncode != 0:
        last = said.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise Failed(f"{' '.join(argv[:4])} ... failed: {last[0]}")


def find_uv(tools: Path) -> tuple[str, str] | str:
    """uv in ``<workdir>/tools/uv``, installed there once from PyPI by this interpreter (a throwaway
    venv's pip: never "externally managed", on any pip): (path, version), or why there is none."""
    uv = tools / "tools" / "uv"

    def version() -> str | None:
        try:
            said = subprocess.run([str(uv), "--version"], capture_output=True, text=True, timeout=60).stdout.split()
        except (OSError, subprocess.SubprocessError):
            return None
        return said[1] if len(said) > 1 and said[0] == "uv" else None

    if version() is None:
        log: list[str] = []
        staging = tools / "tools" / f".uv-{os.getpid()}"  # its own per process; the binary then moved in place
        try:
            staging.mkdir(parents=True)
            _call([sys.executable, "-m", "venv", str(staging / "v")], log, timeout=600)
            pip = [str(staging / "v" / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            _call([*pip, "uv"], log, timeout=600)
            os.replace(staging / "v" / "bin" / "uv", uv)
        except (OSError, Failed) as exc:
            tail = "; ".join(line for line in "".join(log).strip().splitlines()[-3:]) or str(exc)
            return tail  # why: the asker words it
        finally:
            if staging.exists():
                remove_tree(staging)
    found = version()
    return (str(uv), found) if found else f"uv at {uv} does not run"


def build(base: str, key: str, requirements: str, lines: str) -> dict[str, Any]:
    """Environment ``key`` built in place (a venv cannot move) by this interpreter, with uv, else pip:
    papermill, ipykernel and ``requirements`` (a file, or "" for none). With ``lines`` (JSON: the
    requirement lines the newest environment here had too, and the added ones) what it had comes from
    the uv cache without asking the index, then the added lines from the index; else everything is
    resolved on the index. ``.ready`` marks it whole, so a half-built one is redone.
    Says ``ready`` (what its interpreter said of itself) or ``failed``, ``how`` (uv's version and its
    cache, or why pip built it) and ``log``."""
    import fcntl

    root = Path(base)
    venv, tools = root / "venvs" / key, root.parent
    venv.parent.mkdir(parents=True, exist_ok=True)
    # two runs of one project may need the same environment at once (a sweep): one builds, the other
    # waits for it and takes it, never removing it half-built under the first
    with open(venv.parent / f".{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = read_ready(venv)
        if ready is not None:
            return {"ready": ready, "how": {"meanwhile": True}, "log": ""}
        return _build(root, venv, tools, requirements, lines)


def _build(root: Path, venv: Path, tools: Path, requirements: str, lines: str) -> dict[str, Any]:
    log: list[str] = []
    uv = find_uv(tools)
    how = {"uv": uv[1], "cache": str(tools / UV_CACHE)} if isinstance(uv, tuple) else {"uv": None, "why": uv}
    req = ["-r", requirements] if requirements else []
    python = str(venv / "bin" / "python")
    try:
        if venv.exists():
            remove_tree(venv)
        if isinstance(uv, tuple):
            _uv_fill(uv[0], tools, venv, req, json.loads(lines) if lines else None, log)
        else:
            _call([sys.executable, "-m", "venv", str(venv)], log)
            _call([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *KERNEL, *req], log)
        if requirements:
            shutil.copyfile(requirements, venv / REQUIREMENTS_NAME)
        else:
            (venv / REQUIREMENTS_NAME).write_text("")
        probe: list[str] = []
        _call([python, "-c", ENV_PROBE], probe, timeout=300)
        said = json.loads(probe[-1].strip().splitlines()[-1])
        (venv / PROBE_NAME).write_text(json.dumps(said) + "\n")
        (venv / READY_NAME).touch()
    except (Failed, OSError, ValueError) as exc:
        return {"failed": str(exc), "how": how, "log": "".join(log)}
    return {"ready": said, "how": how, "log": "".join(log)}


def _uv_fill(uv: str, tools: Path, venv: Path, req: list[str], lines: Any, log: list[str]) -> None:
    env = {**UV_ENV, "UV_CACHE_DIR": str(tools / UV_CACHE)}
    _call([uv, "venv", "-q", "--python", sys.executable, str(venv)], log, env=env)
    install = [uv, "pip", "install", "--python", str(venv / "bin" / "python")]
    if lines is None:  # the project's first environment here, or requirements uv must read itself
        _call([*install, *KERNEL, *req], log, env=env)
        return
    kept, added = lines
    had = venv.parent / f"{venv.name}.had"
    had.write_text("".join(f"{line}\n" for line in kept))
    said: list[str] = []
    try:
        _call([*install, "--offline", *KERNEL, "-r", str(had)], said, env=env)
        if added:
            _call([*install, *added], said, env=env)
    except Failed:
        last = "".join(said).strip().splitlines()[-1:] or [""]
        log.append(f"not everything is in the uv cache: resolving on the index (uv said: {last[0]})\n")
        _call([*install, *KERNEL, *req], log, env=env)
        return
    finally:
        had.unlink()
    tail = f", then {', '.join(added)} from the index" if added else ""
    log.append(f"from the uv cache on this Mini without asking the index: what the environment before had{tail}\n")
    log.extend(said)


def _size(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def uv_gc(tools: str, bound: int) -> dict[str, Any]:
    """The machine's one uv cache: what no environment uses pruned (``uv cache prune``), then all of
    it cleaned when still past ``bound`` bytes (environments keep their files: links, clones).
    Says the sizes before, after pruning and now; ``cache`` false when there is none (pip builds)."""
    root = Path(tools)
    uv, cache = root / "tools" / "uv", root / UV_CACHE
    if not (os.access(uv, os.X_OK) and cache.is_dir()):
        return {"cache": False}
    env = {**os.environ, "UV_CACHE_DIR": str(cache)}
    before = _size(cache)
    subprocess.run([str(uv), "cache", "prune", "-q"], env=env, capture_output=True, timeout=600)
    pruned = _size(cache)
    if pruned > bound:
        subprocess.run([str(uv), "cache", "clean", "-q"], env=env, capture_output=True, timeout=600)
    return {"cache": True, "before": before, "pruned": pruned, "after": _size(cache)}
