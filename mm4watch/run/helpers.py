"""Helpers for notebooks: where to write, what to report, and where earlier results are.

Under mm4watch a run is told where its folders are (``runenv``), on every
executor and whatever the image holds; run by hand, the helpers read the
project's ``mm4.toml``. Part of the far side (``executors.base.FAR_SIDE``):
what a notebook imports on the Mini keeps to Python 3.9 and never needs
``config`` there.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core import runenv
from ..core.errors import RunNotFound
from ..results.records import RunRecord
from ..results.store import History

SCRATCH = "scratch"


def output_dir() -> Path:
    """The folder this run writes its files to.

    Under mm4watch it is the run's own folder (``MM4_OUTPUT_DIR``); run by hand,
    a scratch folder ``.mm4/scratch`` in the project, so a notebook behaves the
    same either way and a hand run never lands among the results.
    """
    given = runenv.told(runenv.ENV_OUTPUT_DIR)
    if given:
        path = Path(given)
    else:
        from ..core import config

        root, _ = config.find_root()
        path = root / runenv.STATE_DIR / SCRATCH
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_metrics(**values: float) -> dict[str, Any]:
    """Record numbers for this run: ``log_metrics(acc=0.91, loss=0.3)``.

    Merged into ``output_dir() / "metrics.json"`` (written atomically; later
    calls add keys or replace them). At the end of the run they are copied into
    ``run.json``, so ``mm4watch history``, ``diff`` and the report show them.
    Returns everything logged so far."""
    from ..results.metrics import log_metrics as merge

    return merge(output_dir(), values)


def _history(project: str | Path | None) -> History:
    """The project's runs: as the run was told (``project`` not given), else from its ``mm4.toml``."""
    results = runenv.told(runenv.ENV_RESULTS_DIR) if project is None else None
    if results:
        root = runenv.told(runenv.ENV_PROJECT_DIR)
        return History(Path(results), Path(root or results) / runenv.STATE_DIR)
    from ..core import config

    cfg = config.load(Path(project) if project else None)
    return History(cfg.results_dir, cfg.state_dir)


def runs(
    notebook: str,
    *,
    status: str | None = "succeeded",
    where: Mapping[str, Any] | None = None,
    project: str | Path | None = None,
) -> list[RunRecord]:
    """``notebook``'s runs, oldest first, as records (``.id``, ``.parameters``, ``.metrics``, ...).

    By default only successful runs; ``status=None`` for all. ``where`` keeps the
    runs whose parameters have those values (``where={"epochs": 20}``). A run's
    folder is ``results_dir() / record.id``."""
    found = _history(project).query(notebook=notebook, status=status)
    return [r for r in reversed(found) if _matches(r, where)]


def results_dir(project: str | Path | None = None) -> Path:
    """The project's results folder (inside a run: the earlier results it can see)."""
    return _history(project).results_dir


def _matches(record: RunRecord, where: Mapping[str, Any] | None) -> bool:
    return all(key in record.parameters and record.parameters[key] == value for key, value in (where or {}).items())


def latest_run(
    notebook: str,
    *,
    successful: bool = True,
    status: str | None = None,
    where: Mapping[str, Any] | None = None,
    project: str | Path | None = None,
) -> Path:
    """The folder of ``notebook``'s newest run (by default only successful runs).

    ``notebook`` is a name such as ``"23_train_model"`` or a path to the notebook.
    ``status`` picks another status (``successful=False`` any); ``where`` picks
    by parameters: ``latest_run("10_train", where={"epochs": 20})``.
    Raises ``LookupError`` (``RunNotFound``) when there is none.
    """
    wanted = status or ("succeeded" if successful else None)
    history = _history(project)
    candidates = history.query(notebook=notebook, status=wanted, limit=None if where else 1)
    found = [r for r in candidates if _matches(r, where)][:1]
    if not found:
        kind = {"succeeded": "successful run", None: "run"}.get(wanted, f"{wanted} run")
        kind += f" with {', '.join(f'{k}={v!r}' for k, v in where.items())}" if where else ""
        stem = Path(notebook).stem
        remote = runenv.told(runenv.ENV_RUN_ID) is not None
        hint = (
            f"run {stem} first; on a remote executor, make sure it can see it: tag this notebook with "
            f'`# mm4: remote needs={stem}`, or set [run] results_mirror = "all" in mm4.toml'
            if remote
            else f"run {stem} first (mm4watch run notebooks/{stem}.ipynb)"
        )
        raise RunNotFound(f"no {kind} of {stem!r} in {history.results_dir}: {hint}")
    return history.results_dir / found[0].id
