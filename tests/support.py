"""Helpers the tests and the benchmarks share: notebooks, the rig's fake Mini, the command line.

No fixtures here (they live in ``conftest.py``); ``bench/`` imports this module
directly, so a benchmark builds notebooks and reaches the rig the way tests do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RIG_DIR = Path(os.environ.get("MM4_RIG_DIR", "/var/lib/mm4watch-rig"))
RIG_ENV = RIG_DIR / "rig.env"
POOL_ENV = RIG_DIR / "pool.env"  # tests/rig/pool.sh: two fake Minis in one swarm
TEST_DOCKERFILE = """FROM python:3.11-slim
RUN pip install --no-cache-dir "papermill>=2.6" "ipykernel>=6.29"
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt
WORKDIR /project
COPY . /project
"""


def code(source: str, **metadata: Any) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": metadata, "source": source, "outputs": [], "execution_count": None}


def held(hold: Path, before: str = "# mm4: remote") -> dict[str, Any]:
    """A code cell that waits while the file ``hold`` exists (at most two minutes): a run kept going
    exactly as long as the test needs, where a sleep would guess. Make the file first, remove it to let go."""
    return code(
        f"{before}\nimport pathlib, time\nhold, t0 = pathlib.Path({str(hold)!r}), time.monotonic()\n"
        "while hold.exists() and time.monotonic() - t0 < 120:\n    time.sleep(0.05)"
    )


def markdown(source: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def notebook_json(*cells: dict[str, Any]) -> str:
    nb = {
        "cells": list(cells),
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    for i, cell in enumerate(nb["cells"]):
        cell.setdefault("id", f"cell-{i}")
    return json.dumps(nb, indent=1) + "\n"


def write_notebook(path: Path, *cells: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(notebook_json(*cells))
    return path


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def mm4(
    args: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """The real command line, in its own process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mm4watch", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def mm4_each(
    argvs: Sequence[Sequence[str]], cwd: Path, at_once: int = 3, timeout: float = 240
) -> list[subprocess.CompletedProcess[str]]:
    """Each command line (as ``mm4``), ``at_once`` of them side by side (as a person with a few terminals
    would); their results in the order given."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(at_once) as pool:
        return list(pool.map(lambda argv: mm4(argv, cwd=cwd, timeout=timeout), argvs))


def rig_values() -> dict[str, str] | None:
    """What ``tests/rig/up.sh`` wrote about the fake Mini, or None when the rig is not up."""
    if not RIG_ENV.exists():
        return None
    return dict(line.split("=", 1) for line in RIG_ENV.read_text().split() if "=" in line)


def mini_ssh_options(values: dict[str, str]) -> list[str]:
    return [
        "-i", values["MINI_KEY"], "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip


def mini_ssh_args(values: dict[str, str]) -> list[str]:
    return ["-p", values["MINI_PORT"], *mini_ssh_options(values), f"{values['MINI_USER']}@{values['MINI_HOST']}"]


def on_mini(values: dict[str, str], command: str) -> str:
    done = subprocess.run(["ssh", *mini_ssh_args(values), command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def mini_toml(values: dict[str, str], *, port: str | None = None, extra: str = "", timeout: str = "10m") -> str:
    options = ", ".join(json.dumps(o) for o in mini_ssh_options(values))
    return (
        f'[run]\nexecutor = "mini"\ntimeout = "{timeout}"\n\n'
        f'[executors.mini]\ntype = "docker"\n'
        f'host = "ssh://{values["MINI_USER"]}@{values["MINI_HOST"]}:{port or values["MINI_PORT"]}"\n'
        f"ssh_options = [{options}]\n{extra}"
    )


# ---------------------------------------------------------------------------
# the Mac-like Mini (tests/rig/mac.sh): user me (uid 501), zsh, python3 3.9, no docker

MAC_ENV = RIG_DIR / "mac.env"


def mac_values() -> dict[str, str] | None:
    if not MAC_ENV.exists():
        return None
    return dict(line.split("=", 1) for line in MAC_ENV.read_text().split() if "=" in line)


def mac_ssh_options(values: dict[str, str]) -> list[str]:
    return [
        "-p", values["MAC_PORT"], "-i", values["MAC_KEY"], "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
    ]  # fmt: skip


def as_mac_user(values: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    """``command`` over ssh as the Mac-like Mini's user: through its login shell, zsh."""
    argv = ["ssh", *mac_ssh_options(values), f"{values['MAC_USER']}@{values['MAC_HOST']}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def on_mac(values: dict[str, str], command: str, user: str = "root") -> str:
    """``command`` on the Mac-like Mini, from outside (what a test inspects there), as its root or as
    ``user`` (root there may not read another user's /proc/PID/environ); ``~`` is the user's home."""
    done = subprocess.run(
        [
            "docker",
            "exec",
            "-u",
            user,
            "-w",
            "/home/me",
            "-e",
            "HOME=/home/me",
            values["MAC_CONTAINER"],
            "sh",
            "-c",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# ---------------------------------------------------------------------------
# Minis with a Mac's Docker for a non-root account (tests/rig/macdocker.sh): "desktop" (Docker
# Desktop: socket in ~/.docker/run, credsStore desktop whose helper fails over ssh, the base image
# only in a Hub-like registry) and "colima" (Homebrew's CLI 26 in /opt/homebrew/bin, docker-buildx
# installed but not linked; /opt/nobuildx/bin/docker has none)

MACDOCKER_ENV = RIG_DIR / "macdocker.env"
MACDOCKERS = ("desktop", "colima")


def macdocker_values() -> dict[str, str] | None:
    if not MACDOCKER_ENV.exists():
        return None
    return dict(line.split("=", 1) for line in MACDOCKER_ENV.read_text().split() if "=" in line)


def macdocker_toml(values: dict[str, str], which: str, *, extra: str = "", timeout: str = "10m") -> str:
    """An mm4.toml whose runs go to the ``which`` stand-in (no socket set: mm4watch finds it)."""
    key = which.upper()
    options = ", ".join(json.dumps(o) for o in mini_ssh_options({"MINI_KEY": values["MACDOCKER_KEY"]}))
    return (
        f'[run]\nexecutor = "mini"\ntimeout = "{timeout}"\n\n'
        f'[executors.mini]\ntype = "docker"\n'
        f'host = "ssh://{values["MACDOCKER_USER"]}@{values[key + "_HOST"]}:{values[key + "_PORT"]}"\n'
        f"ssh_options = [{options}]\n{extra}"
    )


def on_macdocker(values: dict[str, str], which: str, command: str, user: str = "me", check: bool = True) -> str:
    """``command`` (sh) on the ``which`` stand-in from outside, as ``user``; the docker CLI there as
    ``docker`` on PATH, pointed at that stand-in's socket."""
    key = which.upper()
    env = f"PATH=/usr/local/bin:/opt/homebrew/bin:$PATH DOCKER_HOST=unix://{values[key + '_SOCKET']} DOCKER_CONFIG=/tmp/mm4-test-docker"
    done = subprocess.run(
        ["docker", "exec", "-u", user, "-w", "/home/me", "-e", "HOME=/home/me", values[key + "_CONTAINER"],
         "sh", "-c", f"mkdir -p /tmp/mm4-test-docker && export {env} && {command}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


# ---------------------------------------------------------------------------
# the pool (tests/rig/pool.sh): two fake Minis in one swarm, a registry on the first


def pool_values() -> dict[str, str] | None:
    if not POOL_ENV.exists():
        return None
    return dict(line.split("=", 1) for line in POOL_ENV.read_text().split() if "=" in line)


def pool_ssh_options(values: dict[str, str]) -> list[str]:
    return [
        "-i", values["POOL_KEY"], "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip


def on_node(values: dict[str, str], n: int, command: str, check: bool = True) -> str:
    """A shell command on fake-mini-N of the pool."""
    done = subprocess.run(
        ["ssh", "-p", values[f"POOL_NODE{n}_PORT"], *pool_ssh_options(values), "root@127.0.0.1", command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 or not check, done.stderr
    return done.stdout


def pool_toml(
    values: dict[str, str], *, manager: str | None = None, registry: str | None = None, extra: str = ""
) -> str:
    options = ", ".join(json.dumps(o) for o in pool_ssh_options(values))
    return (
        '[run]\nexecutor = "pool"\ntimeout = "10m"\n\n'
        f'[executors.pool]\ntype = "swarm"\nhost = "{manager or values["POOL_MANAGER"]}"\n'
        f'registry = "{registry or values["POOL_REGISTRY"]}"\nssh_options = [{options}]\n{extra}'
    )


# ---------------------------------------------------------------------------
# the Dask pool (tests/rig/dask.sh): two Mac-like Minis (me, zsh), a scheduler, a worker each (mps=1)

DASK_ENV = RIG_DIR / "dask.env"


def dask_values() -> dict[str, str] | None:
    if not DASK_ENV.exists():
        return None
    return dict(line.split("=", 1) for line in DASK_ENV.read_text().split() if "=" in line)


def dask_tls(values: dict[str, str]) -> Any:
    """This machine's certificate for the rig's pool (its scheduler runs with TLS)."""
    from mm4watch.remote.dask_pool import Tls

    return Tls(values["DASK_TLS_CA"], values["DASK_TLS_CERT"], values["DASK_TLS_KEY"])


def dask_toml(
    values: dict[str, str],
    *,
    scheduler: str | None = None,
    extra: str = "",
    timeout: str = "5m",
    harvest: str = "2s",
    tls: bool = True,
) -> str:
    options = ", ".join(json.dumps(o) for o in pool_ssh_options({"POOL_KEY": values["DASK_KEY"]}))
    user = values["DASK_USER"]
    return (
        f'[run]\nexecutor = "macs"\ntimeout = "{timeout}"\n\n'
        f'[executors.macs]\ntype = "dask"\nscheduler = "{scheduler or values["DASK_SCHEDULER"]}"\n'
        f'python = "python3"\nssh_options = [{options}]\nharvest_every = "{harvest}"\n'
        f'nodes = {{ "mac-1" = "ssh://{user}@{values["DASK_NODE1"]}", "mac-2" = "ssh://{user}@{values["DASK_NODE2"]}" }}\n'
        + (
            f'tls_ca = "{values["DASK_TLS_CA"]}"\ntls_cert = "{values["DASK_TLS_CERT"]}"\ntls_key = "{values["DASK_TLS_KEY"]}"\n'
            if tls
            else ""
        )
        + f"{extra}"
    )


def dask_container(n: int) -> str:
    return f"mm4-dask-{n}"


def on_dask_node(n: int, command: str, user: str = "me") -> str:
    """A shell command on mac-N of the Dask pool, from outside (what a test inspects or breaks there)."""
    done = subprocess.run(
        ["docker", "exec", "-u", user, "-w", "/home/me", dask_container(n), "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


def wait_idle(pool: Any, timeout: float) -> dict[str, tuple[str, ...]]:
    """Wait until no Dask worker runs a lease; what is still held then (empty when none)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        held = {a: k for a, k in pool.leases().items() if k}
        if not held or time.monotonic() > deadline:
            return held
        time.sleep(0.5)


def chromium() -> str:
    import shutil

    import pytest

    found = shutil.which("chromium")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: run tests/rig/up.sh (it installs Debian's chromium)")
        pytest.skip("chromium is not installed (tests/rig/up.sh installs it)")
    return found


def browser(*args: str) -> str:
    """Debian's chromium, headless, on ``args`` (``--dump-dom URL``, ``--screenshot=PNG URL``): what it printed."""
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def lab_settings(config: Path, with_extension: bool) -> None:
    """A ``JUPYTER_CONFIG_DIR`` for a test's or a benchmark's ``jupyter lab``: mm4watch's two sides on or
    off together, and no "news?" toast over the page."""
    disabled = {"@jupyterlab/apputils-extension:announcements": True}
    if not with_extension:
        disabled["mm4watch"] = True
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": disabled}))
    server = {"ServerApp": {"jpserver_extensions": {"mm4watch.lab": with_extension}}}
    (config / "jupyter_server_config.json").write_text(json.dumps(server))
