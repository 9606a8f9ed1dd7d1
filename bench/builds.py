"""Docker builds on the fake Mini (engine 20.10, reached over ssh): BuildKit with the Dockerfile
`mm4watch init` writes (uv, a cache mount, the dependency base) against the classic builder, in one run.

1. A dependency change: one package added to `papermill ipykernel numpy pandas scikit-learn
   matplotlib`, then a one-cell notebook. mm4watch (`mm4watch run`: BuildKit, the init Dockerfile)
   against the same change by hand on the Mini with the classic builder and a plain
   `pip install -r` Dockerfile (`DOCKER_BUILDKIT=0 docker build`, `docker run ... papermill`),
   each round one more package. Target: ratio at most 0.3. Measured in two blocks, by hand's
   rounds then mm4watch's: a pip build of the whole stack evicts from the page cache what the
   step after it reads (the rig's Minis share this machine's disk and memory), which a Mini in
   daily use does not do between two dependency changes; `--interleave` alternates them.
2. The code-change cycle as bench/mini.py measures it (the notebook edited, `mm4watch run`, results
   home): BuildKit and the init Dockerfile against the classic builder and the pip Dockerfile
   mm4watch used before (`builder = "classic"`), alternating. Target: at most 1.05x. The same for
   an edit of the project's code (the last COPY rebuilt), reported beside it.
Before each timed step the disk is synced (`sync`), so no step pays for the writeback of the step
before it (the rig's Minis share this machine's disk).

3. A first build (a new project, its whole stack): BuildKit with its cache emptied first
   (`docker builder prune -a`: no uv cache, no layers) against the classic builder with the pip
   Dockerfile. Target: no slower.

`--mini desktop` or `--mini colima`: the same on a Mini with a Mac's Docker as a non-root account
meets it (tests/rig/macdocker.sh; Docker Desktop-like, colima-like), by hand as that account with the
docker CLI there (a configuration without the keychain helper, as a person working over ssh needs).

Usage (after `bash tests/rig/up.sh`):
  python bench/builds.py [--rounds 3] [--cycles 5] [--parts 123] [--interleave] [--mini root|desktop|colima]
"""

from __future__ import annotations

import argparse
import functools
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from _common import ADDED, REPO, STACK, notebook, rig
from support import TEST_DOCKERFILE, macdocker_toml, macdocker_values, mini_ssh_args, mini_ssh_options, mini_toml

TEMPLATE = (REPO / "mm4watch" / "templates" / "Dockerfile").read_text()
PLAIN = "FROM python:3.11-slim\nCOPY requirements.txt /tmp/requirements.txt\nRUN pip install -r /tmp/requirements.txt\nCOPY . /project\n"
HAND = "mm4-bench-builds-hand"
NONCE = uuid.uuid4().hex  # in every requirements.txt here: no layer of an earlier run of this benchmark fits


class Bench:
    def __init__(self, work: Path, which: str = "root") -> None:
        self.mini = rig()
        self.work = work
        self.which = which
        self.ssh = mini_ssh_args(self.mini)
        self.toml = functools.partial(mini_toml, self.mini)
        self.prefix = ""
        if which != "root":
            values = macdocker_values()
            if values is None:
                sys.exit("no Mac Docker Minis: run `bash tests/rig/up.sh` first")
            key = which.upper()
            self.ssh = [
                "-p", values[f"{key}_PORT"], *mini_ssh_options({"MINI_KEY": values["MACDOCKER_KEY"]}),
                f"{values['MACDOCKER_USER']}@{values[f'{key}_HOST']}",
            ]  # fmt: skip
            self.toml = functools.partial(macdocker_toml, values, which)
            self.prefix = (
                "export PATH=$PATH:/usr/local/bin:/opt/homebrew/bin DOCKER_HOST=unix://"
                f"{values[f'{key}_SOCKET']} DOCKER_CONFIG=$HOME/mm4-bench-docker; mkdir -p $DOCKER_CONFIG; "
            )

    def on_mini(self, command: str, input: bytes | None = None) -> str:
        done = subprocess.run(["ssh", *self.ssh, self.prefix + command], input=input, capture_output=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"{command}: {done.stderr.decode(errors='replace')[-2000:]}")
        return done.stdout.decode(errors="replace")

    def project(self, name: str, dockerfile: str, requirements: list[str], extra: str = "") -> Path:
        root = self.work / name
        (root / "notebooks").mkdir(parents=True)
        (root / "notebooks" / "one.ipynb").write_text(notebook("# mm4: remote\nimport pandas\nx = n", "n = 0"))
        (root / "Dockerfile").write_text(dockerfile)
        (root / "lib.py").write_text("X = 0\n")
        (root / "marker.txt").write_text(uuid.uuid4().hex)  # no earlier run had this context
        (root / "mm4.toml").write_text(self.toml(extra=extra))
        self.requirements(root, requirements)
        return root

    @staticmethod
    def requirements(root: Path, packages: list[str], note: str = "") -> None:
        (root / "requirements.txt").write_text("\n".join(packages) + (f"  # {note}" if note else "") + "\n")

    @staticmethod
    def run(root: Path) -> Path:
        done = subprocess.run(
            [sys.executable, "-m", "mm4watch", "run", "notebooks/one.ipynb"], cwd=root, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-3000:])
        return Path(done.stdout.strip().splitlines()[-1])

    def by_hand(self, packages: list[str]) -> None:
        req = "\n".join(packages) + f"  # {NONCE}\n"
        self.on_mini(f"cat > {HAND}/requirements.txt", input=req.encode())
        self.on_mini(
            f"cd {HAND} && DOCKER_BUILDKIT=0 docker build -q -t {HAND} . >/dev/null && "
            f"docker run --rm --user 1000:1000 -e HOME=/tmp {HAND} sh -c "
            "'cd /project && papermill --no-progress-bar -k python3 one.ipynb /tmp/out.ipynb' >/dev/null 2>&1"
        )


def timed(fn: Callable[[], object]) -> float:
    # what the step before wrote is on disk first: no step pays for another's writeback
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rounds_text(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def dependency_change(bench: Bench, rounds: int, interleave: bool) -> float:
    tool = bench.project("deps", TEMPLATE, [*STACK, ADDED[0]])
    bench.on_mini(f"rm -rf {HAND} && mkdir -p {HAND}")
    bench.on_mini(f"cat > {HAND}/Dockerfile", input=PLAIN.encode())
    bench.on_mini(f"cat > {HAND}/one.ipynb", input=(tool / "notebooks" / "one.ipynb").read_bytes())
    # warm-up: the base image's layers and the Mini's caches, as on a Mini in daily use
    bench.by_hand([*STACK, ADDED[0]])
    bench.run(tool)
    hand: list[float] = []
    mm4: list[float] = []

    def with_mm4(packages: list[str]) -> None:
        bench.requirements(tool, packages, NONCE)
        bench.run(tool)

    steps = []
    for i in range(1, rounds + 1):
        packages = [*STACK, *ADDED[: i + 1]]  # one more package than the round before
        steps.append((hand, functools.partial(bench.by_hand, packages)))
        steps.append((mm4, functools.partial(with_mm4, packages)))
    if not interleave:  # by hand's rounds, then mm4watch's
        steps = steps[0::2] + steps[1::2]
    for samples, step in steps:
        samples.append(timed(step))
    newest = max((tool / "results").iterdir(), key=lambda d: d.name)
    log = (newest / "build.log").read_text()
    run_log = (newest / "run.log").read_text()
    bench.on_mini(f"rm -rf {HAND} && docker rmi -f {HAND} >/dev/null 2>&1 || true")
    h, m = statistics.median(hand), statistics.median(mm4)
    order = "alternating" if interleave else "by hand's rounds, then mm4watch's"
    print(f"1. one package added to {' '.join(STACK)}, then a one-cell notebook (median of {rounds}, {order})")
    print(f"  by hand: classic builder, pip install -r, papermill  {h:7.2f} s   (rounds: {rounds_text(hand)})")
    print(f"  mm4watch run (BuildKit, uv, the dependency base)    {m:7.2f} s   (rounds: {rounds_text(mm4)})")
    ratio = m / h
    print(f"  ratio mm4watch / by hand: {ratio:.3f} (target <= 0.3) -> {'MET' if ratio <= 0.3 else 'NOT MET'}")
    said = [
        line for line in log.splitlines() if line.startswith(("building ", "dependency base")) or " Resolved " in line
    ]
    said += [line for line in log.splitlines() if re.search(r" (Prepared|Installed|Uninstalled) |DONE [1-9]", line)]
    print("  the last build.log says:\n    " + "\n    ".join(said))
    print("  the last run.log's times:", " ".join(re.findall(r"^\[[\dT:.+-]+\]", run_log, re.M)))
    return ratio


def cycles(bench: Bench, count: int) -> tuple[float, float]:
    kit = bench.project("kit", TEMPLATE, ["pandas"])
    classic = bench.project("classic", TEST_DOCKERFILE, ["pandas"], 'builder = "classic"\n')
    for root in (kit, classic):  # the first build of each is not what is measured here
        bench.run(root)
    samples: dict[str, list[float]] = {"notebook kit": [], "notebook classic": [], "code kit": [], "code classic": []}
    for i in range(1, count + 1):
        for name, root in (("kit", kit), ("classic", classic)):
            path = root / "notebooks" / "one.ipynb"
            path.write_text(notebook("# mm4: remote\nimport pandas\nx = n", f"n = {i}"))
            samples[f"notebook {name}"].append(timed(functools.partial(bench.run, root)))
        for name, root in (("kit", kit), ("classic", classic)):
            (root / "lib.py").write_text(f"X = {i}\n")
            samples[f"code {name}"].append(timed(functools.partial(bench.run, root)))
    med = {name: statistics.median(values) for name, values in samples.items()}
    nb_ratio = med["notebook kit"] / med["notebook classic"]
    code_ratio = med["code kit"] / med["code classic"]
    print(f"2. code-change cycles (median of {count}, alternating)")
    for name, values in samples.items():
        print(f"  {name:<18} {med[name]:6.2f} s   (rounds: {rounds_text(values)})")
    verdict = "MET" if nb_ratio <= 1.05 else "NOT MET"
    print(f"  notebook edit, BuildKit / classic: {nb_ratio:.3f} (target <= 1.05) -> {verdict}")
    print(f"  code edit (the last COPY rebuilt), BuildKit / classic: {code_ratio:.3f}")
    return nb_ratio, code_ratio


def first_build(bench: Bench) -> float:
    note = uuid.uuid4().hex  # requirements no earlier build had: the dependency layers are built
    classic = bench.project("first-classic", TEST_DOCKERFILE, STACK, 'builder = "classic"\n')
    kit = bench.project("first-kit", TEMPLATE, STACK)
    for root in (classic, kit):
        bench.requirements(root, STACK, note)
    t_classic = timed(lambda: bench.run(classic))
    bench.on_mini("docker builder prune -af >/dev/null")  # no uv cache, no BuildKit layers
    t_kit = timed(lambda: bench.run(kit))
    ratio = t_kit / t_classic
    print("3. a first build: a new project, its whole stack, then the notebook")
    print(f"  classic builder, pip Dockerfile            {t_classic:7.2f} s")
    print(f"  BuildKit, init Dockerfile, cache emptied   {t_kit:7.2f} s")
    print(f"  ratio BuildKit / classic: {ratio:.3f} (target <= 1.0) -> {'MET' if ratio <= 1.0 else 'NOT MET'}")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--parts", default="123", help="which figures: 1, 2, 3 (default all)")
    parser.add_argument("--interleave", action="store_true", help="1: alternate by hand and mm4watch")
    parser.add_argument("--mini", choices=("root", "desktop", "colima"), default="root", help="which Mini")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mm4-bench-builds-"))
    try:
        bench = Bench(work, args.mini)
        print(f"on the {args.mini} Mini")
        deps = dependency_change(bench, args.rounds, args.interleave) if "1" in args.parts else 0.0
        nb_ratio, _ = cycles(bench, args.cycles) if "2" in args.parts else (0.0, 0.0)
        first = first_build(bench) if "3" in args.parts else 0.0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if deps <= 0.3 and nb_ratio <= 1.05 and first <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
