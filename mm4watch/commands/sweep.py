"""mm4watch sweep NOTEBOOK -p a=1,2 -p b=3,4: queue a grid of parameter sets as runs of one sweep."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core import config
from ..core.errors import EXIT_OK, UsageError
from ..triggers import params

MAX_RUNS = 500  # one sweep queues at most this many runs (a typo in a list would queue thousands)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", help="path to the .ipynb file")
    parser.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=V1,V2",
        help="values to sweep, split on commas, each converted as run -p converts it",
    )  # fmt: skip
    parser.add_argument(
        "-y", "--param-yaml", action="append", default=[], nargs=2, metavar=("KEY", "YAML_LIST"),
        help="values to sweep as a YAML list: -y lr '[0.1, 0.01]'",
    )  # fmt: skip
    parser.add_argument(
        "-f", "--param-file", action="append", default=[], metavar="FILE",
        help="a YAML file of parameters every run of the sweep gets (the swept ones win)",
    )  # fmt: skip
    parser.add_argument("--zip", action="store_true", help="pair the lists side by side instead of every combination")
    parser.add_argument("--executor", metavar="NAME", help="executor from mm4.toml (default: the tag, [run] executor)")


def main(args: argparse.Namespace) -> int:
    from ..core.tags import read_tag
    from ..queue import intake
    from ..queue.active import nudge, read_info

    notebook = Path(args.notebook)
    if notebook.suffix.lower() != ".ipynb" or not notebook.is_file():
        raise UsageError(f"{notebook}: no such notebook (.ipynb)")
    sets = params.grid(args.param, args.param_yaml, paired=args.zip)
    if len(sets) > MAX_RUNS:
        raise UsageError(f"the sweep has {len(sets)} parameter sets; at most {MAX_RUNS} are queued at once")
    fixed = params.collect(files=args.param_file)
    cfg = config.load(notebook.resolve().parent)
    content = notebook.read_bytes()
    rel = notebook.resolve().relative_to(cfg.root).as_posix()
    _, tag = read_tag(content, rel)
    name = cfg.executor(args.executor, tag=tag.executor if tag else None).name
    sweep_id, added = intake.request_sweep(cfg, rel, "manual", sets, content=content, executor=name, fixed=fixed)
    ids = [a.id for a in added]
    running = read_info(cfg.state_dir)
    if running:
        nudge(cfg.state_dir)
    keys = ", ".join(sorted(sets[0]))
    print(
        f"queued sweep {sweep_id}: {len(sets)} runs of {rel} on {name} over {keys} (entries {ids[0]}-{ids[-1]})"
        + ("" if running else "; the daemon is not running: `mm4watch start`")
    )
    print(f"  follow it: mm4watch status · mm4watch history --sweep {sweep_id} · mm4watch cancel --sweep {sweep_id}")
    return EXIT_OK
