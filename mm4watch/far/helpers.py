"""Helpers for notebooks: where to write, what to report, and where earlier results are.

Under mm4watch a run is told where its folders are (``runenv``), on every
executor and whatever the image holds; run by hand, the helpers read the
project's ``mm4.toml``. Part of the far side (``executors.far_side.FAR_SIDE``):
what a notebook imports on the Mini keeps to Python 3.9 and never needs
``config`` there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core import runenv
from ..core.errors import RunNotFound, RunNotSent
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


def log_metrics(step: int | None = None, **values: float) -> dict[str, Any]:
    """Record numbers for this run: ``log_metrics(acc=0.91, loss=0.3)``.

    Merged into ``output_dir() / "metrics.json"`` (written atomically; later
    calls add keys or replace them). At the end of the run they are copied into
    ``run.json``, so ``mm4watch history``, ``diff`` and the report show them.
    With ``step`` (``log_metrics(step=epoch, loss=0.3)``) each value is also a point
    of its curve, a line of ``metrics.jsonl``: the report draws them, ``diff`` and
    ``show --json`` carry them; the last value logged stays the metric.
    Returns everything logged so far."""
    from ..results.metrics import log_metrics as merge

    return merge(output_dir(), values, step)


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
    history = _history(project)
    found = history.query(notebook=notebook, status=status)
    missing = _not_here(history, notebook, status, where, newer_than=None)
    if missing:
        stem = Path(notebook).stem
        raise RunNotSent(
            f"{len(missing)} run(s) of {stem!r} were not sent to this machine ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}): runs() here would miss them. "
            f'Set [run] results_mirror = "all" in mm4.toml to send every run'
        )
    return [r for r in reversed(found) if _matches(r, where)]


def results_dir(project: str | Path | None = None) -> Path:
    """The project's results folder (inside a run: the earlier results it can see)."""
    return _history(project).results_dir


def _not_here(
    history: History, notebook: str, status: str | None, where: Mapping[str, Any] | None, newer_than: str | None
) -> list[str]:
    """Runs of ``notebook`` that match and exist on the machine that holds the project, but were not
    sent to this one (a remote run's copy says which in its index), oldest first; ``newer_than``: only
    those queued after it."""
    try:
        with open(history.results_dir / runenv.MIRROR_INDEX, encoding="utf-8") as fh:
            index = json.load(fh).get("runs") or {}
    except (OSError, ValueError, AttributeError):
        return []  # not a remote run's copy (or an older mm4watch sent it): what is here is all there is
    stem = Path(notebook).stem
    missing = []
    for run_id, facts in index.items():
        if not isinstance(facts, dict) or (history.results_dir / run_id).is_dir():
            continue
        path = str(facts.get("notebook") or "")
        if path != notebook and Path(path).stem != stem:
            continue
        if status is not None and facts.get("status") != status:
            continue
        if where and not all(
            key in (facts.get("parameters") or {}) and facts["parameters"][key] == value for key, value in where.items()
        ):
            continue
        if newer_than is not None and str(facts.get("at") or "") <= newer_than:
            continue
        missing.append((str(facts.get("at") or ""), run_id))
    return [run_id for _, run_id in sorted(missing)]


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
    missing = _not_here(history, notebook, wanted, where, newer_than=found[0].queued_at if found else None)
    if missing:
        stem = Path(notebook).stem
        raise RunNotSent(
            f"the run of {stem!r} asked for is {missing[-1]}, which was not sent to this machine"
            + (f" (this machine has the older {found[0].id})" if found else "")
            + f": tag this notebook with `# mm4: remote needs={stem}` (its newest successful run), "
            f'or set [run] results_mirror = "all" in mm4.toml (every run)'
        )
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
