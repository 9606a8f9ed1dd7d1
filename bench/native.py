"""The native executor on the fake Mini: code-change cycle against doing it by hand.

By hand (the baseline, measured in the same run, alternating): rsync the
notebook to the Mini, `ssh mini venv/bin/papermill ...` in the project's
folder there, rsync the results back. mm4watch: `mm4watch run` on an executor
of type "ssh" with an unchanged environment. Target: ratio at most 1.0.

Usage (after `bash tests/rig/up.sh`): python bench/native.py [--rounds 7]
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

from _common import mini_ssh_options, rig
from _common import notebook as _notebook

from mm4watch.core import config


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    v = rig()
    opts = ["-p", v["MINI_PORT"], *mini_ssh_options(v)]
    dest = f"{v['MINI_USER']}@{v['MINI_HOST']}"
    ssh = ["ssh", *opts, dest]
    rsh = " ".join(["ssh", *opts])
    with tempfile.TemporaryDirectory(prefix="mm4-bench-native-") as tmp:
        project = Path(tmp) / "benchnative"
        (project / "notebooks").mkdir(parents=True)
        (project / "requirements.txt").write_text("# nothing beyond papermill\n")
        (project / "notebooks" / "cycle.ipynb").write_text(_notebook("# mm4: remote\nv = 0"))
        (project / "mm4.toml").write_text(
            '[run]\nexecutor = "gpu"\n[executors.gpu]\ntype = "native"\n'
            f'host = "{dest}"\nssh_options = [{", ".join(json.dumps(o) for o in opts)}]\n'
        )
        run = [sys.executable, "-m", "mm4watch", "run", "notebooks/cycle.ipynb"]
        subprocess.run(run, cwd=project, check=True, capture_output=True)  # builds the environment once (not timed)
        venv = subprocess.run(
            [*ssh, f"ls -d ~/mm4watch/{config.load(project).project_key}/venvs/*"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[0]
        hand_dir = "mm4-bench-hand"
        subprocess.run([*ssh, f"mkdir -p {hand_dir}/notebooks"], check=True)

        def mm4(i: int) -> float:
            (project / "notebooks" / "cycle.ipynb").write_text(_notebook(f"# mm4: remote\nv = {i}"))
            t0 = time.perf_counter()
            subprocess.run(run, cwd=project, check=True, capture_output=True)
            return time.perf_counter() - t0

        def by_hand(i: int) -> float:
            (project / "notebooks" / "cycle.ipynb").write_text(_notebook(f"# mm4: remote\nv = {i}"))
            local_out = Path(tmp) / f"hand-{i}"
            t0 = time.perf_counter()
            subprocess.run(
                ["rsync", "-a", "-e", rsh, str(project / "notebooks" / "cycle.ipynb"), f"{dest}:{hand_dir}/notebooks/"],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [
                    *ssh,
                    f"cd {hand_dir}/notebooks && rm -rf out && mkdir out && MM4_OUTPUT_DIR=$PWD/out "
                    f"{venv}/bin/papermill --no-progress-bar cycle.ipynb out/executed.ipynb >/dev/null 2>&1",
                ],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                ["rsync", "-a", "-e", rsh, f"{dest}:{hand_dir}/notebooks/out/", str(local_out)],
                check=True,
                capture_output=True,
            )
            return time.perf_counter() - t0

        mm4_t, hand_t = [], []
        for i in range(1, args.rounds + 1):
            mm4_t.append(mm4(i))
            hand_t.append(by_hand(i))
        subprocess.run([*ssh, f"rm -rf {hand_dir}"], check=True)
    m, h = statistics.median(mm4_t), statistics.median(hand_t)
    print(f"code-change cycle on the native executor, unchanged environment, median of {args.rounds} alternating")
    print(f"  mm4watch run                         {m:6.2f} s")
    print(f"  by hand (rsync, ssh papermill, rsync) {h:6.2f} s   ratio mm4watch/hand = {m / h:.2f} (target <= 1.0)")
    ok = m / h <= 1.0
    print("target met" if ok else "target NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
