"""mm4watch show RUN: one run's record, readable or as JSON."""

from __future__ import annotations

import argparse
import json

from ..core import config
from ..queue import orphans
from ..results.records import EXECUTED_NAME, LOG_NAME, where
from ..results.store import History
from ..views import format


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run", metavar="RUN", help="run id, unique id prefix, notebook name (its latest run) or run folder"
    )
    parser.add_argument("--json", action="store_true", help="print run.json as it is")


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    orphans.quietly(cfg)  # a run whose process died is finished, not shown running for ever
    record, run_dir = History(cfg.results_dir, cfg.state_dir).find(args.run)
    if args.json:
        print(json.dumps(record.to_dict(), indent=2))
        return 0
    commit = record.commit or {}
    ex = record.executor
    fields: list[tuple[str, str]] = [
        ("run", record.id),
        ("folder", str(run_dir)),
        ("notebook", record.notebook),
        ("status", record.status),
        ("triggers", ", ".join(_trigger(t) for t in record.triggers) or record.trigger),
        ("commit", format.commit(record.commit) + (f" on {commit.get('branch')}" if commit.get("branch") else "")),
        ("executor", f"{ex.get('name')} ({ex.get('type')}) on {ex.get('host')}" + (f" {ex['arch']}" if ex.get("arch") else "")),
        ("parameters", json.dumps(record.parameters)),
        ("metrics", ", ".join(f"{k}={format.value(v)}" for k, v in record.metrics.items()) or "-"),
        ("queued", record.queued_at),
        ("started", record.started_at or "-"),
        ("finished", record.finished_at or "-"),
        ("duration", format.duration(record.duration_s) or "-"),
    ]  # fmt: skip
    if record.rerun_of:
        fields.append(("rerun of", record.rerun_of))
    if record.retry_of:
        fields.append(("retry of", f"{record.retry_of} (its machine went away)"))
    if record.retried_by:
        fields.append(("retried by", record.retried_by))
    if record.inputs:
        runs = record.inputs.get("runs")
        seen = ", ".join(runs) if isinstance(runs, list) else f"{record.inputs.get('count')} earlier runs"
        needs = record.inputs.get("needs")
        if isinstance(needs, list) and needs:
            seen += f" (needs= {', '.join(map(str, needs))})"
        fields.append(("inputs", f"{record.inputs.get('mode')}: {seen or 'none'}"))
    err = record.error or {}
    if err:
        place = where(err) + (f" (In [{err['execution_count']}])" if err.get("execution_count") else "")
        fields.append(("error", f"{place + ': ' if place else ''}{err.get('ename')}: {err.get('evalue')}"))
    if record.source.get("patch"):
        fields.append(("patch", f"{run_dir / record.source['patch']} (the notebook differed from HEAD)"))
    fields += [
        ("executed", str(run_dir / EXECUTED_NAME)),
        ("log", str(run_dir / LOG_NAME)),
        ("outputs", f"{len(record.outputs)} file(s)"),
    ]
    width = max(len(label) for label, _ in fields) + 2
    lines = [f"{label:<{width}}{value}" for label, value in fields]
    for out in record.outputs:
        lines.append(f"{'':<{width}}{out['path']}  {out['size']} bytes  sha256:{out['sha256'][:12]}")
    if err.get("traceback"):
        lines.append("traceback")
        lines.extend(f"  {line}" for line in err["traceback"])
    print("\n".join(lines))
    return 0


def _trigger(t: dict[str, object]) -> str:
    text = str(t.get("trigger"))
    if t.get("commit"):
        text += f" {format.sha(str(t['commit']))}"
    return text + (f" at {str(t['at'])[11:19]}" if t.get("at") else "")
