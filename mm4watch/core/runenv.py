"""What a run is told through its environment: the one contract between mm4watch and a running notebook.

Every executor starts the runner with these variables set (the kernel inherits
them), on whichever machine runs the notebook, whatever the image holds, so the
helpers a notebook imports (``output_dir``, ``latest_run``, ``runs``,
``results_dir``, ``log_metrics``) never guess where the project is.

Part of the far side (see ``executors.far_side.FAR_SIDE``): standard library only,
Python 3.9 and newer.
"""

from __future__ import annotations

import os

STATE_DIR = ".mm4"
ENV_OUTPUT_DIR = "MM4_OUTPUT_DIR"  # the run's own folder: what it writes comes home
ENV_RUN_ID = "MM4_RUN_ID"
ENV_RESULTS_DIR = "MM4_RESULTS_DIR"  # earlier results, as this run sees them (read-only)
ENV_PROJECT_DIR = "MM4_PROJECT_DIR"  # the project's root, as this run sees it
# in the earlier results a remote run sees: every ended run of the project, also those not sent there
MIRROR_INDEX = ".mm4-index.json"


def told(name: str) -> str | None:
    """A variable the run was given, None when unset or empty."""
    value = os.environ.get(name)
    return value if value else None
