"""The Swarm executor on the rig's pool (two fake Minis in one swarm) against the docker executor
on one of them, the same engine, measured in the same run (tests/rig/up.sh brings both up).

1. Wall time: 4 tagged notebooks that each take 10 s, queued at once, the daemon running them
   (the swarm: one per ready node at once; docker: one at a time), from `mm4watch start` to the
   last run's end. Target: ratio <= 0.6.
2. Per-run overhead: one such notebook run in the foreground (`mm4watch run`), swarm minus
   docker, median of alternating rounds. Target: <= +1.0 s.

Usage: python bench/pool.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import notebook

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import TEST_DOCKERFILE, on_node, pool_ssh_options, pool_toml, pool_values  # noqa: E402

SLEEP_S = 10


def mm4(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mm4watch", *args], cwd=project, capture_output=True, text=True)


def make_project(root: Path, toml: str, name: str, sleep_s: float = SLEEP_S) -> Path:
    project = root / name
    (project / "notebooks").mkdir(parents=True)
    (project / "Dockerfile").write_text(TEST_DOCKERFILE)
    (project / "requirements.txt").write_text("# nothing beyond papermill\n")
    (project / "mm4.toml").write_text(toml + '\n[daemon]\ndebounce = "0.5s"\nnotify = false\n')
    (project / "marker.txt").write_text(uuid.uuid4().hex)
    for n in range(4):
        (project / "notebooks" / f"n{n}.ipynb").write_text(
            notebook(f"# mm4: remote\nimport time\ntime.sleep({sleep_s})")
        )
    return project


def docker_toml(values: dict[str, str]) -> str:
    options = ", ".join(json.dumps(o) for o in pool_ssh_options(values))
    return (
        '[run]\nexecutor = "one"\ntimeout = "10m"\n\n'
        f'[executors.one]\ntype = "docker"\nhost = "{values["POOL_MANAGER"]}"\nssh_options = [{options}]\n'
    )


def results(project: Path) -> list[dict[str, object]]:
    folder = project / "results"
    if not folder.exists():  # the first run has not made it yet
        return []
    return [json.loads((d / "run.json").read_text()) for d in folder.iterdir() if (d / "run.json").is_file()]


def four_ended(project: Path, before: set[str]) -> None:
    """Wait until four runs not in ``before`` have ended; fail when one did not succeed."""
    while True:
        new = [r for r in results(project) if r["id"] not in before]
        if len(new) == 4 and all(r["status"] in ("succeeded", "failed", "timeout") for r in new):
            break
        time.sleep(0.1)
    bad = [r["id"] for r in new if r["status"] != "succeeded"]
    assert not bad, f"runs failed: {bad}"


def four_at_once(project: Path) -> float:
    """Queue four runs, start the daemon, wait for the last to end: seconds from start to end."""
    before = {str(r["id"]) for r in results(project)}
    for n in range(4):
        assert mm4(project, "run", "--queue", f"notebooks/n{n}.ipynb").returncode == 0
    t0 = time.perf_counter()
    assert mm4(project, "start").returncode == 0
    four_ended(project, before)
    elapsed = time.perf_counter() - t0
    mm4(project, "stop")
    return elapsed


def one_run(project: Path) -> float:
    t0 = time.perf_counter()
    done = mm4(project, "run", "notebooks/n0.ipynb")
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    values = pool_values()
    if values is None:
        sys.exit("no pool: run `bash tests/rig/up.sh` first")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pool = make_project(root, pool_toml(values), "pool")
        one = make_project(root, docker_toml(values), "one")
        try:
            # warm-up: images built and pushed, warm containers in place, as in daily use
            one_run(pool)
            one_run(one)
            walls: dict[str, list[float]] = {"docker, one node": [], "swarm, two nodes": []}
            singles: dict[str, list[float]] = {"docker, one node": [], "swarm, two nodes": []}
            for _ in range(args.rounds):
                walls["docker, one node"].append(four_at_once(one))
                walls["swarm, two nodes"].append(four_at_once(pool))
                singles["docker, one node"].append(one_run(one))
                singles["swarm, two nodes"].append(one_run(pool))
            nodes = {json.loads((d / "run.json").read_text())["executor"]["node"]["hostname"] for d in (pool / "results").iterdir() if d.is_dir()}  # fmt: skip
        finally:
            # nothing left running: the daemons, and the docker executor's warm container on fake-mini-1
            for project in (pool, one):
                mm4(project, "stop", "--now")
            on_node(
                values, 1, "docker ps -aq --filter label=mm4watch.project=mm4-one | xargs -r docker rm -f", check=False
            )
    return report(
        f"4 notebooks of {SLEEP_S} s each, queued at once",
        walls,
        singles,
        ("docker, one node", "swarm, two nodes"),
        targets=(0.6, 1.0),
        nodes=nodes,
        rounds=args.rounds,
    )


def report(
    title: str,
    walls: dict[str, list[float]],
    singles: dict[str, list[float]],
    names: tuple[str, str],
    *,
    targets: tuple[float, float],
    nodes: set[str],
    rounds: int,
) -> int:
    """Print the medians of a pool (``names[1]``) against one machine (``names[0]``), in the same run:
    the wall-time ratio of four runs and the per-run overhead, each against its target; 0 when both are met."""
    one, pool = names
    wall = {k: statistics.median(v) for k, v in walls.items()}
    single = {k: statistics.median(v) for k, v in singles.items()}
    ratio, overhead = wall[pool] / wall[one], single[pool] - single[one]
    short = [n.split(",")[0] for n in names]
    print(f"{title} (median of {rounds}, alternating)")
    for k, v in wall.items():
        print(f"  {k:<18} {v:6.2f} s   (rounds: {', '.join(f'{x:.2f}' for x in walls[k])})")
    met = ratio <= targets[0]
    print(
        f"  wall ratio {short[1]} / {short[0]}: {ratio:.2f} (target <= {targets[0]}) -> {'MET' if met else 'NOT MET'}"
    )
    print(f"  {short[1]} runs went to: {', '.join(sorted(nodes))}")
    print(f"one such notebook in the foreground (median of {rounds})")
    for k, v in single.items():
        print(f"  {k:<18} {v:6.2f} s   (rounds: {', '.join(f'{x:.2f}' for x in singles[k])})")
    fast = overhead <= targets[1]
    print(
        f"  per-run overhead over {short[0]}: {overhead:+.2f} s (target <= +{targets[1]} s) -> "
        f"{'MET' if fast else 'NOT MET'}"
    )
    return 0 if met and fast else 1


if __name__ == "__main__":
    sys.exit(main())
