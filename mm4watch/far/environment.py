"""What a run's kernel ran with, written beside its result: ``environment.txt``.

A header (``# `` lines: the interpreter's version, the platform, and where torch is installed its
version and whether MPS is available), then one ``name==version`` line per installed distribution,
sorted by name (names as PEP 503 spells them). Asked of the kernel's own interpreter (the kernel
spec's ``argv[0]``, as jupyter_client resolves it) in a process of its own, beside papermill: a
run waits for it only at its end, and never long.

Part of the far side (``executors.far_side.FAR_SIDE``): Python 3.9 and newer, standard library only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

NAME = "environment.txt"
WAIT_S = 120.0  # at most, after the notebook ended (importing torch to ask for MPS is the slow part)

PROBE = r"""
import platform, re, sys
from importlib import metadata
found = {}
for dist in metadata.distributions():
    name = dist.metadata["Name"] if dist.metadata else None
    if name:
        found.setdefault(re.sub(r"[-_.]+", "-", name).lower(), dist.version)
lines = ["# python " + sys.version.split()[0] + " (" + sys.implementation.name + ", " + sys.executable + ")",
         "# platform " + platform.platform()]
if "torch" in found:
    try:
        import torch
        mps = bool(torch.backends.mps.is_available())
    except Exception as exc:
        mps = "unknown (" + type(exc).__name__ + ")"
    lines.append("# torch " + found["torch"] + ", mps available: " + str(mps))
lines += [name + "==" + version for name, version in sorted(found.items())]
with open(sys.argv[1] + ".part", "w", encoding="utf-8") as fh:
    fh.write("\n".join(lines) + "\n")
import os
os.replace(sys.argv[1] + ".part", sys.argv[1])
"""


def kernel_python(kernel: str) -> str:
    """The interpreter kernel ``kernel`` starts: its spec's first word, ``python`` read as this
    interpreter (as jupyter_client reads it), a bare name looked up on PATH."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        first = KernelSpecManager().get_kernel_spec(kernel).argv[0]
    except Exception:  # no such spec (papermill will say so), no jupyter_client: this interpreter
        return sys.executable
    major, minor = sys.version_info[:2]
    if first in ("python", f"python{major}", f"python{major}.{minor}", "{python}"):
        return sys.executable
    return first if os.path.isabs(first) else (shutil.which(first) or sys.executable)


def start(kernel: str, folder: str) -> Any:
    """The probe started for ``kernel``, writing ``folder/environment.txt``; None when it cannot start."""
    try:
        return subprocess.Popen(
            [kernel_python(kernel), "-c", PROBE, os.path.join(folder, NAME)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        print(f"mm4watch: what the kernel runs with is not recorded: {exc}", file=sys.stderr)
        return None


def finish(probe: Any, wait_s: float = WAIT_S) -> None:
    """The probe's end awaited (``wait_s`` at most); what went wrong said in the run's log."""
    if probe is None:
        return
    try:
        _, err = probe.communicate(timeout=wait_s)
    except subprocess.TimeoutExpired:
        probe.kill()
        probe.communicate()
        print(f"mm4watch: what the kernel runs with took over {wait_s:.0f}s to list: not recorded", file=sys.stderr)
        return
    if probe.returncode != 0:
        said = (err or b"").decode(errors="replace").strip().splitlines()[-1:] or [f"exit {probe.returncode}"]
        print(f"mm4watch: what the kernel runs with is not recorded: {said[0]}", file=sys.stderr)
