"""Earlier results made visible on the fake Mini: 100 result folders of 1 MB each.

Against baselines measured in the same run, over the same shaped link:
1. first time: mm4watch's mirror push of 100 folders vs a plain `rsync -a` of the whole
   results folder (the least any tool sends) — time and bytes;
2. after one new folder: the push (one `ls`, then only the new folder) vs `rsync -a` of the
   whole folder again (which walks and compares all 100) — time and bytes;
3. nothing new: the push (one `ls`) vs `ssh true` (the floor of one round trip);
4. what the first remote run of a project sends, with the default (`results_mirror = "latest"`:
   the newest runs of each notebook) against `"all"`: a project of `--project-runs` folders of
   `--project-mb` MB across 5 notebooks (default 100 x 10 MB), bytes and time.

Run as root on a machine where `bash tests/rig/up.sh` has run:
    python bench/mirror.py [--folders 100] [--mb 1] [--rounds 5] [--project-runs 100] [--project-mb 10]
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

from mm4watch.core import config  # noqa: E402
from mm4watch.remote import mirror, ssh  # noqa: E402


def rig_target() -> ssh.Target:
    values = rig()
    return ssh.Target(
        f"{values['MINI_USER']}@{values['MINI_HOST']}", int(values["MINI_PORT"]), tuple(mini_ssh_options(values))
    )


def make_run(results: Path, name: str, mb: int, notebook: str = "nb", at: str = "2026-11-29T10:00:00+00:00") -> None:
    folder = results / name
    folder.mkdir(parents=True)
    (folder / "data.bin").write_bytes(os.urandom(mb * 2**20))  # random: nothing compresses
    record = {"id": name, "notebook": f"notebooks/{notebook}.ipynb", "status": "succeeded", "trigger": "manual",
              "queued_at": at}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(record))


def project(root: Path) -> config.Config:
    (root / "results").mkdir(parents=True, exist_ok=True)
    return config.parse("", root=root)


def send_all(names: list[str]) -> mirror.Inputs:
    return mirror.Inputs("all", tuple(names))


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
    parser.add_argument("--project-runs", type=int, default=100)
    parser.add_argument("--project-mb", type=int, default=10)
    args = parser.parse_args()
    target = ssh.shared(rig_target())
    work = Path(tempfile.mkdtemp(prefix="mm4-bench-mirror-"))
    remote = f"/tmp/mm4-bench-mirror-{os.getpid()}"
    first_push, first_plain, new_push, new_plain, idle_push, idle_floor = [], [], [], [], [], []
    bytes_push = bytes_plain = new_bytes_push = new_bytes_plain = 0
    try:
        cfg = project(work)
        results = cfg.results_dir
        names = [f"nb{i:03d}_20261129_{i:06d}" for i in range(args.folders)]
        for name in names:
            make_run(results, name, args.mb)
        for r in range(args.rounds):
            ssh.run(target, f"rm -rf {remote}; mkdir -p {remote}/plain")
            t0 = time.perf_counter()
            pushed = mirror.push(target, cfg, f"{remote}/push", send_all(names), "bench")
            first_push.append(time.perf_counter() - t0)
            bytes_push = pushed.bytes_sent
            seconds, bytes_plain = plain_rsync(target, results, f"{remote}/plain")
            first_plain.append(seconds)

            extra = f"nbnew_20261130_{r:06d}"
            make_run(results, extra, args.mb)
            t0 = time.perf_counter()
            pushed = mirror.push(target, cfg, f"{remote}/push", send_all([*names, extra]), "bench")
            new_push.append(time.perf_counter() - t0)
            new_bytes_push = pushed.bytes_sent
            assert pushed.sent == (extra,), pushed.sent
            seconds, new_bytes_plain = plain_rsync(target, results, f"{remote}/plain")
            new_plain.append(seconds)
            shutil.rmtree(results / extra)

            t0 = time.perf_counter()
            assert mirror.push(target, cfg, f"{remote}/push", send_all(names), "bench").sent == ()
            idle_push.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ssh.run(target, "true")
            idle_floor.append(time.perf_counter() - t0)
        # 4. a project of many runs across 5 notebooks: the first remote run, default against "all"
        whole = project(work / "project")
        for i in range(args.project_runs):
            nb = f"{i % 5 + 1:02d}_step"
            at = f"2026-11-{1 + i // 24:02d}T{i % 24:02d}:00:00+00:00"
            make_run(whole.results_dir, f"{nb}_202611{1 + i // 24:02d}_{i % 24:02d}0000", args.project_mb, nb, at)
        sent: dict[str, tuple[float, int, int]] = {}
        for mode in ("latest", "all"):
            cfg_mode = config.parse(f'[run]\nresults_mirror = "{mode}"\n', root=whole.root)
            chosen = mirror.choose(cfg_mode, ())
            ssh.run(target, f"chmod -R u+w {remote}/p 2>/dev/null; rm -rf {remote}/p")
            t0 = time.perf_counter()
            pushed = mirror.push(target, cfg_mode, f"{remote}/p", chosen, "bench")
            sent[mode] = (time.perf_counter() - t0, pushed.bytes_sent, len(pushed.sent))
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
    (lt, lb, ln), (at_, ab, an) = sent["latest"], sent["all"]
    print(
        f"4. first remote run, {args.project_runs} folders of {args.project_mb} MB across 5 notebooks: "
        f'default (latest) {ln} folders, {lb / 1e6:.1f} MB in {lt:.2f}s | "all" {an} folders, '
        f"{ab / 1e6:.1f} MB in {at_:.2f}s | bytes {lb / ab:.3f}, time {lt / at_:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
