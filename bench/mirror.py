"""Earlier results made visible on the fake Mini: 100 result folders of 1 MB each.

Against baselines measured in the same run, over the same shaped link:
1. first time: mm4watch's mirror push of 100 folders vs a plain `rsync -a` of the whole
   results folder (the least any tool sends) — time and bytes;
2. after one new folder: the push (one `ls`, then only the new folder) vs `rsync -a` of the
   whole folder again (which walks and compares all 100) — time and bytes;
3. nothing new: the push (one `ls`) vs `ssh true` (the floor of one round trip).

Run as root on a machine where `bash tests/rig/up.sh` has run:
    python bench/mirror.py [--folders 100] [--mb 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from _common import mini_ssh_options, rig  # noqa: E402

from mm4watch.remote import mirror, ssh  # noqa: E402


def rig_target() -> ssh.Target:
    values = rig()
    return ssh.Target(
        f"{values['MINI_USER']}@{values['MINI_HOST']}", int(values["MINI_PORT"]), tuple(mini_ssh_options(values))
    )


def make_run(results: Path, name: str, mb: int) -> None:
    folder = results / name
    folder.mkdir(parents=True)
    (folder / "data.bin").write_bytes(os.urandom(mb * 2**20))  # random: nothing compresses
    (folder / "run.json").write_text(json.dumps({"id": name, "status": "succeeded"}))


def plain_rsync(target: ssh.Target, results: Path, dest: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    done = subprocess.run(
        ["rsync", "-a", "--stats", "-e", target.rsync_shell(), f"{results}/", f"{target.destination}:{dest}/"],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - t0, mirror.bytes_sent(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folders", type=int, default=100)
    parser.add_argument("--mb", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    target = ssh.shared(rig_target())
    work = Path(tempfile.mkdtemp(prefix="mm4-bench-mirror-"))
    remote = f"/tmp/mm4-bench-mirror-{os.getpid()}"
    first_push, first_plain, new_push, new_plain, idle_push, idle_floor = [], [], [], [], [], []
    bytes_push = bytes_plain = new_bytes_push = new_bytes_plain = 0
    try:
        results = work / "results"
        names = [f"nb{i:03d}_20261129_{i:06d}" for i in range(args.folders)]
        for name in names:
            make_run(results, name, args.mb)
        for r in range(args.rounds):
            ssh.run(target, f"rm -rf {remote}; mkdir -p {remote}/plain")
            t0 = time.perf_counter()
            pushed = mirror.push(target, results, f"{remote}/push", tuple(names))
            first_push.append(time.perf_counter() - t0)
            bytes_push = pushed.bytes_sent
            seconds, bytes_plain = plain_rsync(target, results, f"{remote}/plain")
            first_plain.append(seconds)

            extra = f"nbnew_20261130_{r:06d}"
            make_run(results, extra, args.mb)
            t0 = time.perf_counter()
            pushed = mirror.push(target, results, f"{remote}/push", (*names, extra))
            new_push.append(time.perf_counter() - t0)
            new_bytes_push = pushed.bytes_sent
            assert pushed.sent == (extra,), pushed.sent
            seconds, new_bytes_plain = plain_rsync(target, results, f"{remote}/plain")
            new_plain.append(seconds)
            shutil.rmtree(results / extra)

            t0 = time.perf_counter()
            assert mirror.push(target, results, f"{remote}/push", tuple(names)).sent == ()
            idle_push.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ssh.run(target, "true")
            idle_floor.append(time.perf_counter() - t0)
    finally:
        ssh.run(target, f"chmod -R u+w {remote} 2>/dev/null; rm -rf {remote}")
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    total = args.folders * args.mb
    print(f"earlier results on the fake Mini: {args.folders} run folders of {args.mb} MB, medians of {args.rounds}")
    print(
        f"1. first time:      push {med(first_push):6.2f}s, {bytes_push / 1e6:7.1f} MB sent | "
        f"plain rsync {med(first_plain):6.2f}s, {bytes_plain / 1e6:7.1f} MB | ratio {med(first_push) / med(first_plain):.2f} "
        f"({total / med(first_push):.0f} MB/s)"
    )
    print(
        f"2. one new folder:  push {med(new_push):6.2f}s, {new_bytes_push / 1e6:7.2f} MB sent | "
        f"plain rsync {med(new_plain):6.2f}s, {new_bytes_plain / 1e6:7.2f} MB | ratio {med(new_push) / med(new_plain):.2f}"
    )
    print(
        f"3. nothing new:     push {med(idle_push) * 1000:6.0f} ms | ssh true {med(idle_floor) * 1000:6.0f} ms | "
        f"ratio {med(idle_push) / med(idle_floor):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
