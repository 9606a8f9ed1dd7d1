"""A Mini as it comes: the native executor on the Mac-like Mini against the root/bash one.

1. A code-change cycle (`mm4watch run` of a one-cell notebook, unchanged environment) on the
   Mac-like stand-in (user me, zsh login shell, stock python3 3.9; tests/rig/mac.sh) against the
   same on the root/bash fake Mini (Python 3.11), median of alternating rounds in one run.
2. What running every remote command under /bin/sh costs: `ssh.run(target, "true")` (sent as
   `exec /bin/sh -c 'true'`) against the same `true` sent bare to the login shell (zsh), both
   over the shared connection, median of alternating calls.

Usage (after `bash tests/rig/up.sh`): python bench/mac.py [--rounds 5] [--calls 100]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import alternate, mini_ssh_options, notebook, rig
from support import mac_ssh_options, mac_values

from mm4watch.core import proc
from mm4watch.remote import ssh


def project(root: Path, dest: str, options: list[str]) -> Path:
    (root / "notebooks").mkdir(parents=True)
    (root / "requirements.txt").write_text("# nothing beyond papermill\n")
    (root / "notebooks" / "cycle.ipynb").write_text(notebook("# mm4: remote\nv = 0"))
    (root / "mm4.toml").write_text(
        '[run]\nexecutor = "gpu"\n[executors.gpu]\ntype = "native"\n'
        f'host = "{dest}"\nssh_options = [{", ".join(json.dumps(o) for o in options)}]\n'
    )
    return root


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    mini, mac = rig(), mac_values()
    if mac is None:
        sys.exit("no Mac-like Mini: run `bash tests/rig/up.sh` first")
    linux_opts = ["-p", mini["MINI_PORT"], *mini_ssh_options(mini)]
    mac_opts = mac_ssh_options(mac)
    with tempfile.TemporaryDirectory(prefix="mm4-bench-mac-") as tmp:
        runs = {
            "Mac-like (me, zsh, python3 3.9)": project(
                Path(tmp) / "onmac", f"{mac['MAC_USER']}@{mac['MAC_HOST']}", mac_opts
            ),
            "root/bash (python3 3.11)": project(
                Path(tmp) / "onlinux", f"{mini['MINI_USER']}@{mini['MINI_HOST']}", linux_opts
            ),
        }
        argv = [sys.executable, "-m", "mm4watch", "run", "notebooks/cycle.ipynb"]
        counter = iter(range(1, 10_000))

        def cycle(root: Path) -> object:
            (root / "notebooks" / "cycle.ipynb").write_text(notebook(f"# mm4: remote\nv = {next(counter)}"))
            return subprocess.run(argv, cwd=root, check=True, capture_output=True)

        for root in runs.values():
            cycle(root)  # builds each environment once (not timed)
        medians = alternate({name: functools.partial(cycle, root) for name, root in runs.items()}, args.rounds)
        mac_s, linux_s = medians.values()
        print(f"native code-change cycle, unchanged environment, median of {args.rounds} alternating")
        for name, seconds in medians.items():
            print(f"  {name:34} {seconds:6.2f} s")
        print(f"  ratio Mac-like / root-bash = {mac_s / linux_s:.2f}")

        target = ssh.shared(ssh.Target(f"{mac['MAC_USER']}@{mac['MAC_HOST']}", None, tuple(mac_opts)))
        wrapped, bare = [], []
        for _ in range(args.calls):
            t0 = time.perf_counter()
            ssh.run(target, "true")
            wrapped.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            proc.run([*target.argv(), "true"])
            bare.append(time.perf_counter() - t0)
        w, b = statistics.median(wrapped) * 1e3, statistics.median(bare) * 1e3
        print(f"one remote command over the shared connection, median of {args.calls} alternating")
        print(f"  under /bin/sh (exec /bin/sh -c 'true')  {w:6.2f} ms")
        print(f"  bare, to the login shell (zsh)         {b:6.2f} ms   the wrapper adds {w - b:+.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
