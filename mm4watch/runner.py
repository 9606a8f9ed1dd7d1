"""One run, start to finish: snapshot, provenance, run folder, execute, record.

The order matters for safety: the notebook is read and validated before any
folder exists; the run folder and its ``run.json`` exist before anything
executes; whatever happens next (failure, timeout, ^C, a bug), the record is
finalised and the executed notebook kept before the error leaves this module.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import active, executors, git, mirror
from .config import Config
from .errors import Mm4Error, NotebookError
from .fsutil import atomic_write_text, sha256_file
from .names import run_key
from .records import (
    EXECUTED_NAME,
    LOG_NAME,
    PATCH_NAME,
    RESERVED_NAMES,
    RunRecord,
    now_iso,
    parse_iso,
    write_record,
)
from .ssh import Unreachable
from .store import create_run_dir
from .tags import code_hash, find_tag, loads_notebook


@dataclass(frozen=True)
class RunRequest:
    notebook: Path
    trigger: str = "manual"
    parameters: dict[str, Any] = field(default_factory=dict)
    executor: str | None = None  # overrides MM4_EXECUTOR, the tag and [run] executor
    timeout_s: float | None = None  # overrides the tag and [run] timeout
    content: bytes | None = None  # the notebook as it is to run; read from disk when None
    commit_sha: str | None = None  # the content is this commit's notebook (+ patch): a commit run, a rerun
    patch: str | None = None  # with commit_sha: the diff that makes the content from the commit's file
    image: str | None = None  # container executors: run on this image when the engine still has it
    rerun_of: str | None = None
    triggers: tuple[dict[str, Any], ...] = ()  # every request this run answers (queue entries); default: trigger


def run_notebook(
    config: Config,
    request: RunRequest,
    say: Callable[[str], None] = lambda _: None,
    on_created: Callable[[str], None] = lambda _: None,
) -> tuple[RunRecord, Path]:
    notebook = request.notebook.resolve()
    rel = _relative(notebook, config.root)
    content = request.content if request.content is not None else _read(notebook)
    try:
        nb = loads_notebook(content.decode("utf-8"), rel)
    except UnicodeDecodeError:
        raise NotebookError(f"{rel}: not UTF-8 text; a notebook is JSON in UTF-8") from None
    tag = find_tag(nb, rel)
    exec_cfg = config.executor(request.executor, tag=tag.executor if tag else None)
    executor = executors.get(exec_cfg, config)
    timeout_s = request.timeout_s or (tag.timeout_s if tag else None) or config.run.timeout_s
    prov = (
        git.provenance(notebook, content)
        if request.commit_sha is None
        else git.at_commit(notebook, request.commit_sha, request.patch)
    )

    # an executor that cannot be reached makes no run folder: nothing ran (exit 75, not "failed")
    executor.check()
    # earlier results it may load; a missing needs= is an error before anything is made
    needs = tag.needs if tag else ()
    inputs = mirror.choose(config, needs, notebook.stem) if (needs or exec_cfg.type != "local") else None
    run_id, run_dir = create_run_dir(config.results_dir, notebook.stem, datetime.now())
    if prov.patch is not None:
        atomic_write_text(run_dir / PATCH_NAME, prov.patch)
    record = RunRecord(
        id=run_id,
        notebook=rel,
        status="queued",
        trigger=request.trigger,
        queued_at=now_iso(),
        commit=prov.commit,
        executor=executor.describe(),
        parameters=dict(request.parameters),
        timeout_s=timeout_s,
        source={
            "sha256": hashlib.sha256(content).hexdigest(),
            "code_hash": code_hash(nb),
            "patch": PATCH_NAME if prov.patch is not None else None,
        },
        rerun_of=request.rerun_of,
        key=run_key(run_id),
        triggers=[_trigger_entry(t) for t in request.triggers] or [{"trigger": request.trigger, "at": now_iso()}],
        inputs=inputs.to_record() if inputs else None,
    )
    write_record(run_dir, record)
    on_created(run_id)
    say(f"run {run_id} on {exec_cfg.name} ({exec_cfg.type}): {run_dir}")

    snapshot_dir = Path(tempfile.mkdtemp(prefix="mm4-input-"))
    snapshot = snapshot_dir / notebook.name
    snapshot.write_bytes(content)
    log_path = run_dir / LOG_NAME
    _log(log_path, f"mm4watch: run {run_id} of {rel} on {exec_cfg.name}, timeout {timeout_s:.0f}s")
    record = record.evolve(status="running", started_at=now_iso())
    write_record(run_dir, record)
    started = time.monotonic()
    job = executors.Job(
        run_id=run_id,
        input_path=snapshot,
        run_dir=run_dir,
        log_path=log_path,
        cwd=notebook.parent,
        parameters=dict(request.parameters),
        timeout_s=timeout_s,
        kernel=config.run.kernel,
        image=request.image,
        inputs=inputs.runs if inputs else (),
        mirror=inputs is not None and inputs.mode != "none",
    )
    try:
        try:
            with active.registered(config.state_dir, run_id):
                outcome = executor.execute(job)
        except KeyboardInterrupt:
            if active.cancel_requested(config.state_dir, run_id):
                record = _finish(
                    run_dir,
                    record,
                    snapshot,
                    started,
                    executors.Outcome(
                        "cancelled", {"cell": None, "ename": "Cancelled", "evalue": "cancelled with mm4watch cancel"}
                    ),
                )
                say(f"cancelled: {run_dir}")
                return record, run_dir
            _finish(
                run_dir,
                record,
                snapshot,
                started,
                executors.Outcome(
                    "interrupted", {"cell": None, "ename": "KeyboardInterrupt", "evalue": "interrupted by the user"}
                ),
            )
            raise
        except Unreachable as exc:  # the machine went away mid-run: recorded, and exit 75
            _finish(
                run_dir,
                record,
                snapshot,
                started,
                executors.Outcome("failed", {"cell": None, "ename": type(exc).__name__, "evalue": str(exc)}),
            )
            raise
        except Mm4Error as exc:
            # a named failure of this run (a remote command, an engine refusal): a failed run, exit 1
            outcome = executors.Outcome("failed", {"cell": None, "ename": type(exc).__name__, "evalue": str(exc)})
        except BaseException as exc:
            _finish(
                run_dir,
                record,
                snapshot,
                started,
                executors.Outcome("failed", {"cell": None, "ename": type(exc).__name__, "evalue": str(exc)}),
            )
            raise
        record = _finish(run_dir, record, snapshot, started, outcome)
    finally:
        shutil.rmtree(snapshot_dir, ignore_errors=True)
    say(f"{record.status}: {run_dir}")
    return record, run_dir


def resume(config: Config, run_dir: Path, record: RunRecord) -> RunRecord:
    """Finish a run whose mm4watch process died: re-attach where the executor can,
    else record it ``interrupted``. Returns the final record."""
    exec_cfg = config.executor(record.executor.get("name"))
    executor = executors.get(exec_cfg, config)
    started = parse_iso(record.started_at or record.queued_at)
    elapsed = (datetime.now(UTC) - started).total_seconds() if started else 0.0
    job = executors.Job(
        run_id=record.id,
        input_path=run_dir / EXECUTED_NAME,
        run_dir=run_dir,
        log_path=run_dir / LOG_NAME,
        cwd=(config.root / record.notebook).parent,
        parameters=dict(record.parameters),
        timeout_s=max(1.0, (record.timeout_s or config.run.timeout_s) - elapsed),
        kernel=config.run.kernel,
    )
    _log(job.log_path, "mm4watch: the process running this run died; picking it up again")
    outcome = executor.reattach(job)
    if outcome is None:
        outcome = executors.Outcome(
            "interrupted",
            {
                "cell": None,
                "ename": "Interrupted",
                "evalue": "mm4watch stopped while the run went on; it could not be picked up again",
            },
        )
    return _finish(run_dir, record, None, time.monotonic() - elapsed, outcome)


def _finish(
    run_dir: Path, record: RunRecord, snapshot: Path | None, started: float, outcome: executors.Outcome
) -> RunRecord:
    executed = run_dir / EXECUTED_NAME
    if not executed.exists() and snapshot is not None and snapshot.exists():
        shutil.copyfile(snapshot, executed)  # keep the input next to the error
    record = record.evolve(
        status=outcome.status,
        error=outcome.error,
        executor={**record.executor, **outcome.executor},
        finished_at=now_iso(),
        duration_s=round(time.monotonic() - started, 3),
        outputs=collect_outputs(run_dir),
    )
    write_record(run_dir, record)
    detail = f" ({outcome.error.get('ename')}: {outcome.error.get('evalue')})" if outcome.error else ""
    _log(run_dir / LOG_NAME, f"mm4watch: {outcome.status}{detail} after {record.duration_s:.1f}s")
    return record


def _trigger_entry(trigger: dict[str, Any]) -> dict[str, Any]:
    from .records import trigger_for_record

    return trigger_for_record(trigger)


def collect_outputs(run_dir: Path) -> list[dict[str, Any]]:
    """Every file the notebook wrote into its run folder: path, size, sha256."""
    found = []
    for folder, dirs, files in os.walk(run_dir):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            rel = path.relative_to(run_dir).as_posix()
            if rel in RESERVED_NAMES or path.is_symlink() or name.startswith(".run.json."):
                continue
            found.append({"path": rel, "size": path.stat().st_size, "sha256": sha256_file(path)})
    return found


def _relative(notebook: Path, root: Path) -> str:
    try:
        return notebook.relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(notebook, root)).as_posix()


def _read(notebook: Path) -> bytes:
    try:
        return notebook.read_bytes()
    except FileNotFoundError:
        raise NotebookError(f"{notebook}: no such notebook") from None
    except OSError as exc:
        raise NotebookError(f"{notebook}: cannot read it: {exc}") from None


def _log(path: Path, line: str) -> None:
    with open(path, "a+", encoding="utf-8") as fh:
        fh.seek(0, os.SEEK_END)
        # the notebook's last output may lack its newline: start on a line of our own
        if fh.tell() > 0:
            fh.seek(fh.tell() - 1)
            if fh.read(1) != "\n":
                fh.write("\n")
        fh.write(f"[{now_iso()}] {line}\n")
