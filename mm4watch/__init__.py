"""mm4watch: run tagged Jupyter notebooks on a second machine and keep every result.

In a notebook::

    from mm4watch import output_dir, latest_run
    out = output_dir()                       # this run's folder (a scratch folder by hand)
    prev = latest_run("23_train_model")      # folder of that notebook's newest good run
    log_metrics(acc=0.91, loss=0.3)          # numbers for run.json, history, diff and the report
    for r in runs("10_train"): ...           # a notebook's runs, oldest first, with metrics
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
_HELPERS = ("output_dir", "latest_run", "log_metrics", "runs", "results_dir")
__all__ = [*_HELPERS, "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: importing mm4watch (the CLI, the git hook) stays cheap.
    if name in _HELPERS:
        from .far import helpers

        return getattr(helpers, name)
    raise AttributeError(f"module 'mm4watch' has no attribute {name!r}")
