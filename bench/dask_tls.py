"""What TLS costs the Dask pool: one notebook in the foreground (`mm4watch run`) on the rig's pool
(tls://, the pool's certificates) against the same two Mac-like Minis under a second scheduler and
workers started here on plain tcp:// (`insecure = true`), with the native executor on mac-1 as the
baseline, all in the same run, alternating. The plain pool is stopped at the end.

Usage: python bench/dask_tls.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dask_pool import native_toml
from pool import make_project, mm4, one_run
from support import dask_toml, dask_values, on_dask_node

SLEEP_S = 2
PLAIN_PORT = 8796
START = (
    "nohup /home/me/dask/bin/dask {what} >/home/me/dask-plain-{tag}.log 2>&1 </dev/null & "
    "for _ in $(seq 120); do grep -q '{ready}' /home/me/dask-plain-{tag}.log && exit 0; sleep 0.25; done; "
    "tail -5 /home/me/dask-plain-{tag}.log; exit 1"
)


def plain_pool(values: dict[str, str]) -> str:
    """A scheduler on mac-1 and a worker (mps=1) on each Mini, all plain tcp://: its address."""
    host = values["DASK_SCHEDULER"].split("://", 1)[1].rsplit(":", 1)[0]
    address = f"tcp://{host}:{PLAIN_PORT}"
    on_dask_node(1, START.format(
        what=f"scheduler --host {host} --port {PLAIN_PORT} --dashboard-address :0", tag="scheduler",
        ready="Scheduler at"))  # fmt: skip
    for n in (1, 2):
        on_dask_node(n, START.format(
            what=f"worker {address} --nworkers 1 --nthreads 1 --resources mps=1 --name mac-{n} --no-nanny --no-dashboard",
            tag="worker", ready="Registered to"))  # fmt: skip
    return address


def stop_plain_pool() -> None:
    for n in (1, 2):  # [d]: the pattern does not match the shell that runs pkill
        on_dask_node(n, f"pkill -f '[d]ask (scheduler|worker).*{PLAIN_PORT}' || true")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    values = dask_values()
    if values is None:
        sys.exit("no Dask pool: run `bash tests/rig/up.sh` first")
    names = ("native, mac-1", "dask, tls://", "dask, tcp:// (insecure)")
    times: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        try:
            address = plain_pool(values)
            projects = {
                names[0]: make_project(root, native_toml(values), "one", SLEEP_S),
                names[1]: make_project(root, dask_toml(values, timeout="10m", harvest="60s"), "tls", SLEEP_S),
                names[2]: make_project(
                    root,
                    dask_toml(
                        values, scheduler=address, timeout="10m", harvest="60s", extra="insecure = true\n", tls=False
                    ),
                    "plain",
                    SLEEP_S,
                ),
            }
            for project in projects.values():  # warm-up: each environment built, each connection open
                one_run(project)
            for _ in range(args.rounds):
                for name, project in projects.items():
                    times[name].append(one_run(project))
                time.sleep(0.5)
        finally:
            stop_plain_pool()
            for project in (root / p for p in ("one", "tls", "plain")):
                if project.exists():
                    mm4(project, "stop", "--now")
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"one notebook of {SLEEP_S} s in the foreground (median of {args.rounds}, alternating)")
    for k, v in median.items():
        print(f"  {k:<24} {v:6.2f} s   (rounds: {', '.join(f'{x:.2f}' for x in times[k])})")
    base = median[names[0]]
    for k in names[1:]:
        print(f"  {k} over native: {median[k] - base:+.2f} s ({median[k] / base:.2f}x)")
    print(f"  TLS over plain tcp://: {median[names[1]] - median[names[2]]:+.2f} s per run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
