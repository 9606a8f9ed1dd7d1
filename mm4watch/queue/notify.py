"""Saying that a run ended: a command from mm4.toml, else the desktop's own way."""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

from ..core import proc
from ..core.config import Config
from ..results.records import RunRecord


def message(record: RunRecord) -> tuple[str, str]:
    title = f"mm4watch: {record.stem} {record.status}"
    body = f"{record.id} in {record.duration_s or 0:.0f}s"
    if record.error:
        body += f": {record.error.get('ename')}: {record.error.get('evalue')}"[:200]
    return title, body


def send(config: Config, record: RunRecord, run_dir: Path) -> None:
    title, body = message(record)
    say(config, title, body, {"MM4_RUN_ID": record.id, "MM4_RUN_STATUS": record.status, "MM4_RUN_DIR": str(run_dir)})


def say(config: Config, title: str, body: str, extra: dict[str, str] | None = None) -> None:
    """A notification: ``notify_command`` (with MM4_RUN_TITLE / MM4_RUN_MESSAGE set), else the desktop's."""
    if config.daemon.notify_command:
        env = {**os.environ, **(extra or {}), "MM4_RUN_TITLE": title, "MM4_RUN_MESSAGE": body}
        proc.run(["/bin/sh", "-c", config.daemon.notify_command], env=env, check=False, timeout=30)
    elif platform.system() == "Darwin":
        script = f"display notification {_quote(body)} with title {_quote(title)}"
        proc.run(["osascript", "-e", script], check=False, timeout=30)
    elif shutil.which("notify-send"):
        proc.run(["notify-send", title, body], check=False, timeout=30)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
