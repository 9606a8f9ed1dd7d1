"""The dask executor on the rig's Dask pool (two Mac-like Minis, a worker with mps=1 on each)
against the native executor on one of them (mac-1, the same machine and account), in the same run
(tests/rig/up.sh brings both up).

1. Wall time: 4 tagged notebooks that each take 8 s, queued at once to a daemon that is already
   running (as it is all day; started once per project, then warmed by one round not measured,
   which builds each Mini's environment and opens its ssh connection), the pool running one
   per worker at once, native one at a time: from the first `mm4watch run --queue` to the last
   run's end. Target: ratio <= 0.55.
2. Per-run overhead: one such notebook in the foreground (`mm4watch run`), dask minus native,
   median of alternating rounds. Target: <= +0.5 s.

Usage: python bench/dask_pool.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from pool import four_ended, make_project, mm4, one_run, report, results
from support import dask_toml, dask_values, pool_ssh_options

SLEEP_S = 8


def four_queued(project: Path) -> float:
    """Queue four runs to the running daemon, wait for the last to end: seconds from the first queueing."""
    before = {str(r["id"]) for r in results(project)}
    t0 = time.perf_counter()
    for n in range(4):
        assert mm4(project, "run", "--queue", f"notebooks/n{n}.ipynb").returncode == 0
    four_ended(project, before)
    return time.perf_counter() - t0


def nodes_used(project: Path) -> set[str]:
    """The workers the project's runs so far went to (their run.json)."""
    records = [d / "run.json" for d in (project / "results").iterdir() if (d / "run.json").is_file()]
    return {json.loads(r.read_text())["executor"]["node"]["name"] for r in records}


def native_toml(values: dict[str, str]) -> str:
    options = ", ".join(json.dumps(o) for o in pool_ssh_options({"POOL_KEY": values["DASK_KEY"]}))
    return (
        '[run]\nexecutor = "one"\ntimeout = "10m"\n\n'
        f'[executors.one]\ntype = "native"\nhost = "ssh://{values["DASK_USER"]}@{values["DASK_NODE1"]}"\n'
        f'python = "python3"\nssh_options = [{options}]\nharvest_every = "60s"\n'
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    values = dask_values()
    if values is None:
        sys.exit("no Dask pool: run `bash tests/rig/up.sh` first")
    single_name, pool_name = "native, one Mini", "dask, two Minis"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pool = make_project(root, dask_toml(values, timeout="10m", harvest="60s"), "pool", SLEEP_S)
        one = make_project(root, native_toml(values), "one", SLEEP_S)
        try:
            for project in (pool, one):
                assert mm4(project, "start").returncode == 0
            # warm-up, as in daily use: each Mini's environment built and its ssh connection open (two
            # runs one after the other may both go to one worker: four queued at once use both)
            one_run(one)
            four_queued(pool)
            warmed = nodes_used(pool)
            if len(warmed) < 2:
                sys.exit(f"the warm-up used {', '.join(sorted(warmed))} only: the pool has not two workers")
            walls: dict[str, list[float]] = {single_name: [], pool_name: []}
            singles: dict[str, list[float]] = {single_name: [], pool_name: []}
            for _ in range(args.rounds):
                walls[single_name].append(four_queued(one))
                walls[pool_name].append(four_queued(pool))
                singles[single_name].append(one_run(one))
                singles[pool_name].append(one_run(pool))
            nodes = nodes_used(pool)
        finally:
            for project in (pool, one):
                mm4(project, "stop", "--now")
    return report(
        f"4 notebooks of {SLEEP_S} s each, queued at once to a running daemon",
        walls,
        singles,
        (single_name, pool_name),
        targets=(0.55, 0.5),
        nodes=nodes,
        rounds=args.rounds,
    )


if __name__ == "__main__":
    sys.exit(main())
