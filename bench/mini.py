"""The Docker executor on the fake Mini (tests/rig/up.sh), link shaped to 1 Gbit/s.

Three figures, each against a baseline measured in the same run:

1. Code-change cycle (edit the tagged notebook, run it, results home):
   mm4watch vs the same by hand with the docker CLI (`docker -H ssh://mini build`,
   `docker run ... papermill`, `docker cp`), median of alternating rounds
   (target: ratio <= 1.0), and vs the seed pipeline (`docker build` here,
   `docker save | ssh mini docker load`, `docker run`) (target: >= 6x faster).
2. Bytes over the link for a code-change run (notebook edit, and project code
   edit) vs the build context plus results (target: under 2x; never the image).
3. Results home: mm4watch's transfer of a 200 MB output vs raw `ssh mini cat`
   (target: at least 90%).

Run as root on a machine where `bash tests/rig/up.sh` has run:
    python bench/mini.py [--rounds 5] [--seed-rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import mini_ssh_options, rig

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RIG = Path(os.environ.get("MM4_RIG_DIR", "/var/lib/mm4watch-rig"))
EXAMPLE = "notebooks/00_test_remote.ipynb"  # the shipped example: imports matplotlib, draws a figure
MINIMAL = "notebooks/bench_minimal.ipynb"  # two small cells, as in the rig's own measurements
DOCKER = "/usr/bin/docker"


def run_cmd(notebook: str) -> str:
    return (
        "mkdir -p /tmp/out && cd /project/notebooks && "
        f"papermill --no-progress-bar {Path(notebook).name} /tmp/out/executed.ipynb >/dev/null 2>&1"
    )


def sh(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(argv, check=True, stderr=subprocess.PIPE, **kw)


class Bed:
    def __init__(self, values: dict[str, str], work: Path) -> None:
        self.v = values
        self.work = work
        self.opts = mini_ssh_options(values)
        self.dest = f"{values['MINI_USER']}@{values['MINI_HOST']}"
        # the docker CLI's ssh helper cannot take -i: a wrapper first on PATH adds it
        wrap = work / "bin"
        wrap.mkdir()
        (wrap / "ssh").write_text("#!/bin/sh\nexec /usr/bin/ssh " + " ".join(self.opts) + ' "$@"\n')
        (wrap / "ssh").chmod(0o755)
        self.env = {**os.environ, "PATH": f"{wrap}:{os.environ['PATH']}"}
        self.remote_env = {**self.env, "DOCKER_HOST": f"ssh://{self.dest}:{values['MINI_PORT']}"}

    def ssh(self, command: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
        return sh(["ssh", "-p", self.v["MINI_PORT"], *self.opts, self.dest, command], **kw)

    def link_bytes(self) -> int:
        pid = sh([DOCKER, "inspect", "-f", "{{.State.Pid}}", self.v["MINI_CONTAINER"]]).stdout.decode().strip()
        # /proc/net/dev answers for the network namespace of the process reading it
        for line in sh(["nsenter", "-t", pid, "-n", "cat", "/proc/net/dev"]).stdout.decode().splitlines():
            name, _, counters = line.partition(":")
            if name.strip() == "eth0":
                fields = counters.split()
                return int(fields[0]) + int(fields[8])  # received + sent bytes
        raise RuntimeError("no eth0 in the fake Mini")


def make_project(bed: Bed) -> Path:
    project = bed.work / "project"
    files = sh(["git", "ls-files"], cwd=REPO).stdout.decode().split()
    for rel in files:
        if (REPO / rel).is_file():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, project / rel)
    minimal = {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
                "id": "a",
                "source": "# mm4: remote\nimport json, os, pathlib\nout = pathlib.Path(os.environ.get('MM4_OUTPUT_DIR', '.'))",
            },
            {
                "cell_type": "code",
                "metadata": {"tags": ["parameters"]},
                "outputs": [],
                "execution_count": None,
                "id": "b",
                "source": "n_samples = 1000",
            },
            {
                "cell_type": "code",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
                "id": "c",
                "source": "(out / 'result.json').write_text(json.dumps({'total': sum(range(n_samples))}))",
            },
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (project / MINIMAL).write_text(json.dumps(minimal, indent=1) + "\n")
    opts = ", ".join(json.dumps(o) for o in bed.opts)
    (project / "mm4.toml").write_text(
        '[run]\nexecutor = "mini"\n\n[executors.mini]\ntype = "docker"\n'
        f'host = "ssh://{bed.dest}:{bed.v["MINI_PORT"]}"\nssh_options = [{opts}]\n'
    )
    return project


def edit_notebook(project: Path, notebook: str, value: int) -> None:
    path = project / notebook
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["source"] = re.sub(r"n_samples = \d+", f"n_samples = {1000 + value}", text)
    path.write_text(json.dumps(nb, indent=1) + "\n")


def mm4_cycle(bed: Bed, project: Path, notebook: str, i: int) -> float:
    edit_notebook(project, notebook, i)
    t0 = time.perf_counter()
    sh([sys.executable, "-m", "mm4watch", "run", notebook], cwd=project, env=bed.env)
    return time.perf_counter() - t0


def hand_cycle(bed: Bed, project: Path, notebook: str, i: int) -> float:
    edit_notebook(project, notebook, i)
    name = f"mm4-bench-hand-{os.getpid()}-{Path(notebook).stem}-{i}"
    out = bed.work / name
    t0 = time.perf_counter()
    env = bed.remote_env
    sh([DOCKER, "build", "-q", "-t", "mm4-bench-hand", "."], cwd=project, env=env)
    sh(
        [
            DOCKER,
            "run",
            "--name",
            name,
            "--user",
            "1000:1000",
            "-e",
            "HOME=/tmp",
            "-e",
            "PYTHONPATH=/project",
            "-e",
            "MM4_OUTPUT_DIR=/tmp/out",
            "mm4-bench-hand",
            "sh",
            "-c",
            run_cmd(notebook),
        ],
        env=env,
    )
    sh([DOCKER, "cp", f"{name}:/tmp/out", str(out)], env=env)
    sh([DOCKER, "rm", name], env=env)
    return time.perf_counter() - t0


def seed_cycle(bed: Bed, project: Path, notebook: str, i: int) -> tuple[float, int]:
    edit_notebook(project, notebook, 100 + i)
    name = f"mm4-bench-seed-{os.getpid()}-{Path(notebook).stem}-{i}"
    before = bed.link_bytes()
    t0 = time.perf_counter()
    sh([DOCKER, "build", "-q", "-t", "mm4-bench-seed", "."], cwd=project, env={**bed.env, "DOCKER_HOST": ""})
    save = subprocess.Popen([DOCKER, "save", "mm4-bench-seed"], stdout=subprocess.PIPE)
    bed.ssh("docker load -q", stdin=save.stdout)
    save.wait()
    bed.ssh(
        f"docker run --name {name} --user 1000:1000 -e HOME=/tmp -e PYTHONPATH=/project "
        f"-e MM4_OUTPUT_DIR=/tmp/out mm4-bench-seed sh -c '{run_cmd(notebook)}' && docker cp {name}:/tmp/out /tmp/{name}"
    )
    with open(bed.work / f"{name}.tar", "wb") as fh:
        bed.ssh(f"tar -C /tmp -c {name} && rm -rf /tmp/{name} && docker rm {name} >/dev/null", stdout=fh)
    seconds = time.perf_counter() - t0
    return seconds, bed.link_bytes() - before


def bytes_for_run(bed: Bed, project: Path, change: str) -> dict[str, int]:
    from mm4watch.core import config
    from mm4watch.remote import buildctx

    if change == "notebook":
        edit_notebook(project, EXAMPLE, 7777)
    else:
        helper = project / "mm4watch" / "_bench_marker.py"
        helper.write_text(f"MARK = {time.time()!r}\n")
    before = bed.link_bytes()
    sh([sys.executable, "-m", "mm4watch", "run", EXAMPLE], cwd=project, env=bed.env)
    sent = bed.link_bytes() - before
    stem = Path(EXAMPLE).stem
    newest = max(
        (p for p in (project / "results").iterdir() if p.name.startswith(stem)), key=lambda p: p.stat().st_mtime
    )
    record = json.loads((newest / "run.json").read_text())
    results = sum(o["size"] for o in record["outputs"]) + (newest / "executed.ipynb").stat().st_size
    context = buildctx.make(config.load(project)).size
    return {"link": sent, "context": context, "results": results, "built": record["executor"]["image_built"]}


def results_home(bed: Bed, size_mb: int) -> tuple[float, float]:
    from mm4watch.core import config
    from mm4watch.executors.docker import DockerConfig
    from mm4watch.remote.docker_engine import Engine

    name = "mm4-bench-big"
    bed.ssh(
        f"docker rm -f {name} >/dev/null 2>&1; docker run -d --name {name} python:3.11-slim sh -c "
        f"'mkdir /output && head -c {size_mb}000000 /dev/urandom > /output/big.bin && sleep 600' >/dev/null && "
        f"head -c {size_mb}000000 /dev/urandom > /tmp/big.bin"
    )
    while (
        bed.ssh(f"docker exec {name} sh -c 'stat -c %s /output/big.bin 2>/dev/null || echo 0'").stdout.strip()
        != f"{size_mb}000000".encode()
    ):
        time.sleep(0.5)
    raw_times, ours_times = [], []
    cfg = config.load(bed.work / "project").executor("mini")
    assert isinstance(cfg, DockerConfig)
    for i in range(3):
        target = bed.work / f"raw-{i}.bin"
        t0 = time.perf_counter()
        with open(target, "wb") as fh:
            bed.ssh("cat /tmp/big.bin", stdout=fh)
        raw_times.append(time.perf_counter() - t0)
        target.unlink()
        into = bed.work / f"ours-{i}"
        t0 = time.perf_counter()
        with Engine(cfg) as engine:
            container = engine.container(name)
            assert container is not None
            engine.fetch(container, "/output", into)
        ours_times.append(time.perf_counter() - t0)
        assert (into / "big.bin").stat().st_size == size_mb * 1_000_000
        shutil.rmtree(into)
    bed.ssh(f"docker rm -f {name} >/dev/null; rm -f /tmp/big.bin")
    return statistics.median(raw_times), statistics.median(ours_times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed-rounds", type=int, default=2)
    parser.add_argument("--size-mb", type=int, default=200)
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="mm4-bench-") as tmp:
        bed = Bed(rig(), Path(tmp))
        project = make_project(bed)
        print("warming up: first builds on the Mini and here (not timed)", flush=True)
        mm4_cycle(bed, project, MINIMAL, 0)
        hand_cycle(bed, project, MINIMAL, 0)
        seed_cycle(bed, project, MINIMAL, 0)
        for title, notebook in (("two small cells", MINIMAL), ("the example: matplotlib and a figure", EXAMPLE)):
            mm4_t, hand_t = [], []
            for i in range(1, args.rounds + 1):
                mm4_t.append(mm4_cycle(bed, project, notebook, i))
                hand_t.append(hand_cycle(bed, project, notebook, i))
            seed = [seed_cycle(bed, project, notebook, i) for i in range(1, args.seed_rounds + 1)]
            m, h = statistics.median(mm4_t), statistics.median(hand_t)
            s = statistics.median(t for t, _ in seed)
            print(
                f"\n1. code-change cycle, {notebook} ({title}); median of {args.rounds} alternating, seed {args.seed_rounds}"
            )
            print(f"   mm4watch run                 {m:6.2f} s")
            print(f"   by hand (docker -H ssh://)   {h:6.2f} s   ratio mm4watch/hand = {m / h:.2f} (target <= 1.0)")
            print(
                f"   seed (save | ssh load)       {s:6.2f} s   seed/mm4watch = {s / m:.1f}x (target >= 6x); "
                f"{statistics.median(b for _, b in seed) / 1e6:.0f} MB over the link per run",
                flush=True,
            )
            ok &= m / h <= 1.0 and s / m >= 6

        print("\n2. bytes over the link for one run (both directions)")
        for change in ("notebook", "code"):
            b = bytes_for_run(bed, project, change)
            budget = 2 * (b["context"] + b["results"])
            print(
                f"   {change + ' edit':<14} {b['link'] / 1e3:8.1f} kB; context {b['context'] / 1e3:.1f} kB + results "
                f"{b['results'] / 1e3:.1f} kB -> ratio {b['link'] / (b['context'] + b['results']):.2f} (target < 2); "
                f"image built: {b['built']}"
            )
            ok &= b["link"] < budget

        raw, ours = results_home(bed, args.size_mb)
        print(f"\n3. results home, {args.size_mb} MB (median of 3)")
        print(f"   raw ssh cat     {raw:6.2f} s  {args.size_mb / raw:6.1f} MB/s")
        print(
            f"   mm4watch fetch  {ours:6.2f} s  {args.size_mb / ours:6.1f} MB/s  = {raw / ours * 100:.0f}% of raw (target >= 90%)"
        )
        ok &= raw / ours >= 0.9
        for image in ("mm4-bench-hand",):
            subprocess.run([DOCKER, "rmi", "-f", image], capture_output=True, env=bed.remote_env)
    print("\nall targets met" if ok else "\nsome targets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
