"""Helpers for notebooks: where to write, and where earlier results are."""

from __future__ import annotations

from pathlib import Path

from . import config
from .errors import RunNotFound
from .store import History

SCRATCH = "scratch"


def output_dir() -> Path:
    """The folder this run writes its files to.

    Under mm4watch it is the run's own folder (``MM4_OUTPUT_DIR``); run by hand,
    a scratch folder ``.mm4/scratch`` in the project, so a notebook behaves the
    same either way and a hand run never lands among the results.
    """
    given = config.env(config.ENV_OUTPUT_DIR)
    if given:
        path = Path(given)
    else:
        root, _ = config.find_root()
        path = root / config.STATE_DIR / SCRATCH
    path.mkdir(parents=True, exist_ok=True)
    return path


def latest_run(notebook: str, *, successful: bool = True, project: str | Path | None = None) -> Path:
    """The folder of ``notebook``'s newest run (by default only successful runs).

    ``notebook`` is a name such as ``"23_train_model"`` or a path to the notebook.
    Raises ``LookupError`` (``RunNotFound``) when there is none.
    """
    cfg = config.load(Path(project) if project else None)
    runs = History(cfg.results_dir, cfg.state_dir).query(
        notebook=notebook, status="succeeded" if successful else None, limit=1
    )
    if not runs:
        kind = "successful run" if successful else "run"
        stem = Path(notebook).stem
        remote = config.env(config.ENV_RUN_ID) is not None
        hint = (
            f"run {stem} first; on a remote executor, make sure it can see it: tag this notebook with "
            f'`# mm4: remote needs={stem}`, or set [run] results_mirror = "all" in mm4.toml'
            if remote
            else f"run {stem} first (mm4watch run notebooks/{stem}.ipynb)"
        )
        raise RunNotFound(f"no {kind} of {stem!r} in {cfg.results_dir}: {hint}")
    return cfg.results_dir / runs[0].id
