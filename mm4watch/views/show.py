"""``mm4watch show`` as lines: one run's record, its files and its error."""

from __future__ import annotations

import json
from pathlib import Path

from ..results.records import ENVIRONMENT_NAME, EXECUTED_NAME, LOG_NAME, RunRecord, where
from . import format


def lines(record: RunRecord, run_dir: Path) -> list[str]:
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
        ("curves", ", ".join(f"{k} ({n} points)" for k, n in record.curves.items()) or "-"),
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
    env = record.environment
    if env:
        torch = f", torch {env['torch']}" if env.get("torch") else ""
        fields.append(("environment", f"python {env.get('python')}, {env.get('packages')} packages{torch} "
                       f"({run_dir / ENVIRONMENT_NAME}, {env.get('hash')})"))  # fmt: skip
    if record.source.get("patch"):
        fields.append(("patch", f"{run_dir / record.source['patch']} (the notebook differed from HEAD)"))
    fields += [
        ("executed", str(run_dir / EXECUTED_NAME)),
        ("log", str(run_dir / LOG_NAME)),
        ("outputs", f"{len(record.outputs)} file(s)"),
    ]
    width = max(len(label) for label, _ in fields) + 2
    shown = [f"{label:<{width}}{value}" for label, value in fields]
    for out in record.outputs:
        shown.append(f"{'':<{width}}{out['path']}  {out['size']} bytes  sha256:{out['sha256'][:12]}")
    if err.get("traceback"):
        shown.append("traceback")
        shown.extend(f"  {line}" for line in err["traceback"])
    return shown


def _trigger(t: dict[str, object]) -> str:
    text = str(t.get("trigger"))
    if t.get("commit"):
        text += f" {format.sha(str(t['commit']))}"
    return text + (f" at {str(t['at'])[11:19]}" if t.get("at") else "")
