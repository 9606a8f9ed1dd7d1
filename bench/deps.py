"""A dependency change on the native executor: one package added to a data-science stack, then a
one-cell notebook, on the Mac-like Mini (user me, zsh, stock python3 3.9; tests/rig/mac.sh).

By hand (the baseline, measured in the same run, alternating): `python3 -m venv` + `pip install -r
requirements.txt` (pip's own cache warm), then papermill on the notebook, over ssh on the Mini.
mm4watch: `mm4watch run` after the same package was added to requirements.txt (a new
environment: uv with its cache on the Mini, shared by every project there). Each round adds another
package, so every round is a real change. Target: ratio at most 0.15.

Usage (after `bash tests/rig/up.sh`): python bench/deps.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ADDED, STACK, notebook
from support import mac_ssh_options, mac_values


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    mac = mac_values()
    if mac is None:
        sys.exit("no Mac-like Mini: run `bash tests/rig/up.sh` first")
    opts = mac_ssh_options(mac)
    dest = f"{mac['MAC_USER']}@{mac['MAC_HOST']}"

    def on_mac(command: str) -> None:
        subprocess.run(["ssh", *opts, dest, command], check=True, capture_output=True, timeout=1800)

    hand, tool = [], []
    with tempfile.TemporaryDirectory(prefix="mm4-bench-deps-") as tmp:
        project = Path(tmp) / "deps"
        (project / "notebooks").mkdir(parents=True)
        (project / "notebooks" / "one.ipynb").write_text(notebook("# mm4: remote\nimport pandas\nx = 1"))
        (project / "mm4.toml").write_text(
            '[run]\nexecutor = "gpu"\n[executors.gpu]\ntype = "native"\n'
            f'host = "{dest}"\npython = "python3"\nssh_options = [{", ".join(json.dumps(o) for o in opts)}]\n'
        )
        run = [sys.executable, "-m", "mm4watch", "run", "notebooks/one.ipynb"]
        hand_dir = "mm4-bench-deps"
        on_mac(f"rm -rf {hand_dir} && mkdir -p {hand_dir}")
        nb = (project / "notebooks" / "one.ipynb").read_text()
        subprocess.run(["ssh", *opts, dest, f"cat > {hand_dir}/one.ipynb"], input=nb.encode(), check=True)

        def by_hand(packages: list[str]) -> float:
            req = "\\n".join(packages)
            t0 = time.perf_counter()
            on_mac(
                f"cd {hand_dir} && printf '{req}\\n' > requirements.txt && rm -rf venv && python3 -m venv venv && "
                "venv/bin/pip install -q --disable-pip-version-check -r requirements.txt && "
                "venv/bin/python -m papermill -k python3 one.ipynb out.ipynb"
            )
            return time.perf_counter() - t0

        def with_mm4(packages: list[str]) -> float:
            (project / "requirements.txt").write_text("\n".join(packages) + "\n")
            t0 = time.perf_counter()
            done = subprocess.run(run, cwd=project, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            return time.perf_counter() - t0

        # warm-up: pip's cache and uv's cache hold the stack, as on a Mini in daily use
        by_hand([*STACK, ADDED[0]])
        with_mm4([*STACK, ADDED[0]])
        for i in range(1, args.rounds + 1):
            packages = [*STACK, *ADDED[: i + 1]]  # one more package than the round before
            hand.append(by_hand(packages))
            tool.append(with_mm4(packages))
        newest = max((project / "results").iterdir(), key=lambda d: d.name)
        build_log = (newest / "build.log").read_text()
        on_mac(f"rm -rf {hand_dir}")
    h, m = statistics.median(hand), statistics.median(tool)
    print(f"one package added to {' '.join(STACK)}, then a one-cell notebook (median of {args.rounds})")
    print(
        f"  by hand: venv + pip install -r + papermill   {h:7.2f} s   (rounds: {', '.join(f'{x:.2f}' for x in hand)})"
    )
    print(f"  mm4watch run (native, uv)                   {m:7.2f} s   (rounds: {', '.join(f'{x:.2f}' for x in tool)})")
    ratio = m / h
    print(f"  ratio mm4watch / by hand: {ratio:.3f} (target <= 0.15) -> {'MET' if ratio <= 0.15 else 'NOT MET'}")
    print("  the last build.log:\n    " + "\n    ".join(build_log.strip().splitlines()[:6]))
    return 0 if ratio <= 0.15 else 1


if __name__ == "__main__":
    sys.exit(main())
