"""One run, start to finish: snapshot, provenance, run folder, execute, record.

The order matters for safety: the notebook is read and validated before any
folder exists; the run folder and its ``run.json`` exist before anything
executes; whatever happens next (failure, timeout, ^C, a bug), the record is
finalised and the executed notebook kept before the error leaves this module.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from .. import executors
from ..core import git
from ..core.config import Config, ExecutorConfig
from ..core.durations import format_duration
from ..core.errors import Mm4Error, NotebookError
from ..core.fsutil import atomic_write_text
from ..core.names import nfc, notebook_key, run_key
from ..core.tags import code_hash, read_tag
from ..queue import active
from ..remote import mirror
from ..remote.ssh import Unreachable
from ..results import environment, metrics
from ..results.outputs import collect_outputs
from ..results.records import (
    EXECUTED_NAME,
    LOG_NAME,
    PATCH_NAME,
    RunRecord,
    Trigger,
    append_log,
    now_iso,
    parse_iso,
    trigger_for_record,
    where,
    write_record,
)
from ..results.store import create_run_dir

T = TypeVar("T")
FINISH_DEADLINE_S = 600.0  # hashing outputs past this: the rest are listed without a hash

if TYPE_CHECKING:
    from ..executors.base import Executor


@dataclass(frozen=True)
class RunRequest:
    notebook: Path
    trigger: Trigger = "manual"
    parameters: dict[str, Any] = field(default_factory=dict)
    executor: str | None = None  # overrides MM4_EXECUTOR, the tag and [run] executor
    timeout_s: float | None = None  # overrides the tag and [run] timeout
    content: bytes | None = None  # the notebook as it is to run; read from disk when None
    commit_sha: str | None = None  # the content is this commit's notebook (+ patch): a commit run, a rerun
    patch: str | None = None  # with commit_sha: the diff that makes the content from the commit's file
    image: str | None = None  # container executors: run on this image when the engine still has it
    rerun_of: str | None = None
    triggers: tuple[dict[str, Any], ...] = ()  # every request this run answers (queue entries); default: trigger
    retry_of: str | None = None  # the run this one repeats: its machine went away mid-run
    retries_left: int | None = None  # runs again when its machine goes away; None: [run] retry_lost
    sweep: dict[str, Any] | None = None  # one run of a sweep: {"id", "index", "of"}
    requirements: bytes | None = None  # with commit_sha: the requirements.txt the run gets (rerun --same-environment)


@dataclass(frozen=True)
class _Prepared:
    """Everything a run needs, found and checked before anything is made."""

    notebook: Path
    rel: str
    content: bytes
    nb: dict[str, Any]
    exec_cfg: ExecutorConfig
    executor: Executor[Any]
    timeout_s: float
    prov: git.Provenance
    inputs: mirror.Inputs | None
    tag: Mapping[str, str] = field(default_factory=dict)  # the notebook's tag options
    code: Path | None = None  # a commit run's own copy of the project (removed after the run)
    cwd: Path | None = None  # the notebook's folder in the code it runs with
    reached: Any = None  # what the executor's check() reached (a connection), for the run


@dataclass(frozen=True)
class Display:
    """How a run in the foreground shows itself (``progress.Progress``)."""

    live: bool = False  # one live line on a terminal
    plain: IO[str] | None = None  # else one line per phase here (stderr)
    log_output: bool = False  # also the notebook's own output, as it comes


def run_notebook(
    config: Config,
    request: RunRequest,
    say: Callable[[str], None] = lambda _: None,
    on_created: Callable[[str], None] = lambda _: None,
    display: Display = Display(),
) -> tuple[RunRecord, Path]:
    """One run in four steps: prepare, open the record, execute, finish. Whatever happens once
    the record is open, it is finished and the executed notebook kept before an error leaves."""
    from .progress import Progress, cell_labels

    prepared = _prepare(config, request)
    record, run_dir, job = _open(config, request, prepared)
    on_created(record.id)
    say(f"run {record.id} on {prepared.exec_cfg.name} ({prepared.exec_cfg.type})")
    watch = Progress(
        job.log_path,
        cell_labels(job.input_path, dict(request.parameters)),
        live=display.live,
        plain=display.plain,
        log_output=display.log_output,
        phase_file=active.phase_file(config.state_dir, record.id),
    )
    job = dataclasses.replace(job, on_phase=watch.set_phase, on_place=watch.set_place)
    started = time.monotonic()
    raised: BaseException | None = None
    with active.owning(config.state_dir, record.id):  # until its end is recorded (orphans.py)
        watch.start()
        try:
            with active.registered(config.state_dir, record.id):
                outcome = prepared.executor.execute(job)
        except BaseException as exc:
            outcome, raised = _outcome_of(exc, active.cancel_requested(config.state_dir, record.id))
        finally:
            watch.stop()
        record = _finish(run_dir, record, job.input_path, started, outcome, config.results.metrics)
    shutil.rmtree(job.input_path.parent, ignore_errors=True)
    if prepared.code is not None:
        shutil.rmtree(prepared.code, ignore_errors=True)
    if raised is not None:
        raise raised
    say(f"{record.status} after {format_duration(record.duration_s)}")
    left = config.run.retry_lost if request.retries_left is None else request.retries_left
    if (record.error or {}).get("ename") == "MiniLost" and left > 0:
        from ..results.records import amend_retried_by
        from ..results.store import History

        say(f"{(record.error or {}).get('evalue')}: running it again ([run] retry_lost)")
        again = dataclasses.replace(request, content=prepared.content, retry_of=record.id, retries_left=left - 1)
        retry, retry_dir = run_notebook(config, again, say, on_created, display)
        amend_retried_by(run_dir, retry.id)
        History(config.results_dir, config.state_dir).refresh(record.id)
        return retry, retry_dir
    return record, run_dir


def _prepare(config: Config, request: RunRequest) -> _Prepared:
    """Read and check the notebook, choose the executor, reach it: no run folder is made before
    this passes (a commit run's copy of the project is, and is removed if this fails)."""
    notebook = request.notebook.resolve()
    rel = _relative(notebook, config.root)
    content = request.content if request.content is not None else _read(notebook)
    nb, tag = read_tag(content, rel)
    exec_cfg = config.executor(request.executor, tag=tag.executor if tag else None)
    timeout_s = request.timeout_s or (tag.timeout_s if tag else None) or config.run.timeout_s
    reached: Any = None  # what the executor's check() reached
    # a commit run's copy of the project: a folder of its own (0700), removed after the run
    code = Path(tempfile.mkdtemp(prefix="mm4-code-")) if request.commit_sha is not None else None
    try:
        run_config = config if code is None else dataclasses.replace(config, code=_exported(config, request, code))
        executor = executors.get(exec_cfg, run_config)
        prov = (
            git.provenance(notebook, content, config.root, (config.project.results, config.project.data))
            if request.commit_sha is None
            else git.at_commit(notebook, request.commit_sha, request.patch)
        )
        # an executor that cannot be reached makes no run folder: nothing ran (exit 75, not "failed")
        reached = executor.check()
        # earlier results it may load; a missing needs= is an error before anything is made
        needs = tag.needs if tag else ()
        inputs = mirror.choose(config, needs) if (needs or executor.elsewhere) else None
    except BaseException:
        if reached is not None:
            reached.close()
        if code is not None:
            shutil.rmtree(code, ignore_errors=True)
        raise
    options = dict(tag.options) if tag else {}
    cwd = notebook.parent if rel.startswith("../") else (run_config.code_root / rel).parent
    return _Prepared(
        notebook, rel, content, nb, exec_cfg, executor, timeout_s, prov, inputs, options, code, cwd, reached
    )


def _exported(config: Config, request: RunRequest, folder: Path) -> Path:
    """The project as committed in the request's SHA (with its patch, a rerun of a dirty run):
    what a commit run and a rerun execute, whatever the work tree holds now. The data folder and
    the results are the project's own (linked), as every executor gives them."""
    assert request.commit_sha is not None
    try:
        root = git.export(config.root, request.commit_sha, folder / "tree", request.patch)
    except Mm4Error as exc:
        raise NotebookError(f"cannot run commit {request.commit_sha[:12]}: {exc}") from None
    for name in (config.project.data, config.project.results):
        place, there = root / name, config.root / name
        if there.is_dir() and not place.exists() and not place.is_symlink():
            place.parent.mkdir(parents=True, exist_ok=True)
            place.symlink_to(there, target_is_directory=True)
    if request.requirements is not None:  # this copy's own: an image or a venv is built from the list
        (root / "requirements.txt").write_bytes(request.requirements)
    return root.resolve()


def _open(config: Config, request: RunRequest, p: _Prepared) -> tuple[RunRecord, Path, executors.Job]:
    """The run folder (never reused), its record, and the job the executor gets."""
    run_id, run_dir = create_run_dir(config.results_dir, nfc(p.notebook.stem), datetime.now())
    if p.prov.patch is not None:
        atomic_write_text(run_dir / PATCH_NAME, p.prov.patch)
    record = RunRecord(
        id=run_id,
        notebook=p.rel,
        status="queued",
        trigger=request.trigger,
        queued_at=now_iso(),
        commit=p.prov.commit,
        executor=p.executor.describe(),
        parameters=dict(request.parameters),
        timeout_s=p.timeout_s,
        source={
            "sha256": hashlib.sha256(p.content).hexdigest(),
            "code_hash": code_hash(p.nb),
            "patch": PATCH_NAME if p.prov.patch is not None else None,
            "tree": p.prov.tree,
        },
        rerun_of=request.rerun_of,
        retry_of=request.retry_of,
        key=run_key(run_id),
        triggers=[trigger_for_record(t) for t in request.triggers] or [{"trigger": request.trigger, "at": now_iso()}],
        inputs=p.inputs.to_record() if p.inputs else None,
        sweep=request.sweep,
    )
    write_record(run_dir, record)
    snapshot = Path(tempfile.mkdtemp(prefix="mm4-input-")) / p.notebook.name
    snapshot.write_bytes(p.content)
    log_path = run_dir / LOG_NAME
    append_log(log_path, f"run {run_id} of {p.rel} on {p.exec_cfg.name}, timeout {p.timeout_s:.0f}s")
    if request.requirements is not None:
        pins = sum(1 for line in request.requirements.decode().splitlines() if "==" in line)
        append_log(
            log_path, f"requirements.txt: the {pins} packages run {request.rerun_of} ran with (--same-environment)"
        )
    record = record.evolve(status="running", started_at=now_iso())
    write_record(run_dir, record)
    job = executors.Job(
        run_id=run_id,
        input_path=snapshot,
        run_dir=run_dir,
        log_path=log_path,
        cwd=p.cwd or p.notebook.parent,
        parameters=dict(request.parameters),
        timeout_s=p.timeout_s,
        kernel=config.run.kernel,
        record_environment=config.run.environment,
        image=request.image,
        earlier=p.inputs,
        tag=p.tag,
        reached=[p.reached] if p.reached is not None else [],
    )
    return record, run_dir, job


def _outcome_of(exc: BaseException, cancelled: bool) -> tuple[executors.Outcome, BaseException | None]:
    """What an exception out of an executor means for the run, and whether it goes on up.

    ^C from ``mm4watch cancel``: cancelled, and the run returns normally. ^C from the
    user: interrupted, and it goes on (exit 130). The Mini lost mid-run: failed, and it
    goes on (exit 75). Any other named failure (a remote command, an engine refusal):
    failed, returned (exit 1). Anything else: failed, and it goes on (a crash log)."""
    failed = executors.Outcome("failed", {"cell": None, "ename": type(exc).__name__, "evalue": str(exc)})
    if isinstance(exc, KeyboardInterrupt):
        if cancelled:
            return executors.Outcome(
                "cancelled", {"cell": None, "ename": "Cancelled", "evalue": "cancelled with mm4watch cancel"}
            ), None
        return executors.Outcome(
            "interrupted", {"cell": None, "ename": "KeyboardInterrupt", "evalue": "interrupted by the user"}
        ), exc
    if isinstance(exc, Unreachable):
        return failed, exc
    if isinstance(exc, Mm4Error):
        return failed, None
    return failed, exc


def _job_again(config: Config, run_dir: Path, record: RunRecord, timeout_s: float) -> executors.Job:
    """The job of a run recorded earlier, to follow it again on its machine."""
    return executors.Job(
        run_id=record.id,
        input_path=run_dir / EXECUTED_NAME,
        run_dir=run_dir,
        log_path=run_dir / LOG_NAME,
        cwd=(config.root / record.notebook).parent,
        parameters=dict(record.parameters),
        timeout_s=max(1.0, timeout_s),
        kernel=config.run.kernel,
        record_environment=config.run.environment,
    )


def resume(config: Config, run_dir: Path, record: RunRecord) -> RunRecord:
    """Finish a run whose mm4watch process died: re-attach where the executor can,
    else record it ``interrupted``. Returns the final record. The caller holds the
    run's lock (``active.owning``)."""
    exec_cfg = config.executor(record.executor.get("name"))
    executor = executors.get(exec_cfg, config)
    started = parse_iso(record.started_at or record.queued_at)
    elapsed = (datetime.now(UTC) - started).total_seconds() if started else 0.0
    job = _job_again(config, run_dir, record, (record.timeout_s or config.run.timeout_s) - elapsed)
    append_log(job.log_path, "the process running this run died; picking it up again")
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
    return _finish(run_dir, record, None, time.monotonic() - elapsed, outcome, config.results.metrics)


def fetch_kept(config: Config, run_dir: Path, record: RunRecord) -> RunRecord:
    """Bring home the files a run left on its machine (``error.kept``: the machine went away past the
    run's timeout, or this disk was full), and record them. A run that ended there on its own (this
    disk was full) takes the outcome it had there; one lost with its machine stays as it was. The caller
    holds the run's lock."""
    kept = (record.error or {}).get("kept")
    if not kept:
        raise Mm4Error(f"run {record.id} left nothing on its machine to fetch (its files came home with it)")
    exec_cfg = config.executor(record.executor.get("name"))
    job = _job_again(config, run_dir, record, record.timeout_s or config.run.timeout_s)
    append_log(job.log_path, f"fetching what the run left on {exec_cfg.name} ({kept})")
    outcome = executors.get(exec_cfg, config).reattach(job)
    if outcome is None:
        raise Mm4Error(f"{exec_cfg.name} no longer holds run {record.id}'s files ({kept}): removed there")
    said = outcome.error or {}
    if said.get("kept"):
        raise Mm4Error(f"run {record.id}'s files are still on {exec_cfg.name}: {said.get('evalue')}")
    found, _ = metrics.collect(run_dir, config.results.metrics)
    if record.error and record.error.get("ename") != "DiskFull":  # lost with its machine: it stays so
        error: dict[str, Any] | None = {k: v for k, v in record.error.items() if k != "kept"}
        status = record.status
    else:
        error, status = outcome.error, outcome.status
    record = record.evolve(
        status=status,
        error=error,
        outputs=collect_outputs(run_dir),
        metrics=found or record.metrics,
        warnings=[*record.warnings, f"its files came home later, with mm4watch fetch, at {now_iso()}"],
    )
    write_record(run_dir, record)
    append_log(run_dir / LOG_NAME, f"fetched: {status}")
    return record


def _finish(
    run_dir: Path,
    record: RunRecord,
    snapshot: Path | None,
    started: float,
    outcome: executors.Outcome,
    patterns: tuple[str, ...],
) -> RunRecord:
    """The run's end, recorded whatever its folder holds: each step that fails is one line in
    run.log and one entry in ``warnings``, never a run left ``running``."""
    log = run_dir / LOG_NAME
    warnings: list[str] = []

    def step(what: str, work: Callable[[], T], fallback: T) -> T:
        try:
            return work()
        except Exception as exc:  # whatever the folder holds, the record still gets the outcome
            warnings.append(f"{what}: {type(exc).__name__}: {exc}")
            append_log(log, f"{what} failed ({type(exc).__name__}: {exc}); the run's outcome is recorded anyway")
            return fallback

    executed = run_dir / EXECUTED_NAME
    if not executed.exists() and snapshot is not None and snapshot.exists():
        step("keeping the input notebook", lambda: shutil.copyfile(snapshot, executed), None)  # beside the error
    deadline = time.monotonic() + FINISH_DEADLINE_S
    nothing: tuple[dict[str, float], list[str]] = ({}, [])
    found, problems = step("reading metrics", lambda: metrics.collect(run_dir, patterns), nothing)
    no_curves: dict[str, list[list[float]]] = {}
    curves = step("reading curves", lambda: metrics.read_steps(run_dir, problems), no_curves)
    for problem in problems:
        append_log(log, problem)
    notes: list[str] = []
    none_listed: list[dict[str, Any]] = []
    outputs = step("listing outputs", lambda: collect_outputs(run_dir, deadline, notes), none_listed)
    for note in notes:
        append_log(log, f"{note}")
    warnings.extend(notes)
    record = record.evolve(
        status=outcome.status,
        error=outcome.error,
        executor={**record.executor, **outcome.executor},
        finished_at=now_iso(),
        duration_s=round(time.monotonic() - started, 3),
        outputs=outputs,
        metrics=found,
        curves={key: len(points) for key, points in curves.items()},
        warnings=warnings,
        environment=step("reading environment.txt", lambda: environment.summary(run_dir), None),
    )
    try:
        write_record(run_dir, record)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise Mm4Error(
            f"this machine's disk is full: run {record.id} ended {outcome.status}, but its record could not be "
            f"written in {run_dir} ({shutil.disk_usage(run_dir).free / 1e6:.1f} MB free there); what it wrote "
            "so far is kept. Free some space: the next mm4watch command (status, history) finishes its record"
        ) from None
    place = where(outcome.error)
    detail = (
        f" ({place + ': ' if place else ''}{outcome.error.get('ename')}: {outcome.error.get('evalue')})"
        if outcome.error
        else ""
    )
    append_log(run_dir / LOG_NAME, f"{outcome.status}{detail} after {record.duration_s:.1f}s")
    return record


def _relative(notebook: Path, root: Path) -> str:
    """The notebook's name in the record: as stored, in NFC (``core/names.notebook_key``)."""
    try:
        return notebook_key(root, notebook.relative_to(root).as_posix())
    except ValueError:
        return nfc(Path(os.path.relpath(notebook, root)).as_posix())


def _read(notebook: Path) -> bytes:
    try:
        return notebook.read_bytes()
    except FileNotFoundError:
        raise NotebookError(f"{notebook}: no such notebook") from None
    except OSError as exc:
        raise NotebookError(f"{notebook}: cannot read it: {exc}") from None
