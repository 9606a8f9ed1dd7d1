"""mm4watch show RUN: one run's record, readable or as JSON."""

from __future__ import annotations

import argparse
import json

from .. import config
from ..durations import format_duration
from ..records import EXECUTED_NAME, LOG_NAME, where
from ..store import History
from .history import short_commit


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    record, run_dir = History(cfg.results_dir, cfg.state_dir).find(args.run)
    if args.json:
        print(json.dumps(record.to_dict(), indent=2))
        return 0
    commit = record.commit or {}
    lines = [
        f"run        {record.id}",
        f"folder     {run_dir}",
        f"notebook   {record.notebook}",
        f"status     {record.status}",
        f"trigger    {record.trigger}",
        f"commit     {short_commit(record.commit)}" + (f" on {commit.get('branch')}" if commit.get("branch") else ""),
        f"executor   {record.executor.get('name')} ({record.executor.get('type')}) on {record.executor.get('host')} {record.executor.get('arch')}",
        f"parameters {json.dumps(record.parameters)}",
        f"queued     {record.queued_at}",
        f"started    {record.started_at or '-'}",
        f"finished   {record.finished_at or '-'}",
        f"duration   {format_duration(record.duration_s) or '-'}",
    ]
    if record.error:
        err = record.error
        place = where(err) + (f" (In [{err['execution_count']}])" if err.get("execution_count") else "")
        lines.append(f"error      {place + ': ' if place.strip() else ''}{err.get('ename')}: {err.get('evalue')}")
        lines.extend(f"           {line}" for line in err.get("traceback") or [])
    if record.source.get("patch"):
        lines.append(f"patch      {run_dir / record.source['patch']} (the notebook differed from HEAD)")
    lines.append(f"notebook   {run_dir / EXECUTED_NAME}")
    lines.append(f"log        {run_dir / LOG_NAME}")
    lines.append(f"outputs    {len(record.outputs)} file(s)")
    for out in record.outputs:
        lines.append(f"  {out['path']}  {out['size']} bytes  sha256:{out['sha256'][:12]}")
    print("\n".join(lines))
    return 0
