"""Libraries imported without what they would load and this tool never uses.

``nbformat`` imports ``jsonschema``, whose format checkers import every optional
backend installed beside it. On a machine with JupyterLab (``jupyter_events``
asks for ``jsonschema[format-nongpl]``), one of them is ``rfc3987-syntax``, which
builds some thirty Earley parsers at import: 1.3-1.8 s of CPU in each process
that reads a notebook (python-jsonschema/jsonschema#1428), for the ``iri``
format no notebook schema uses. The processes that import nbformat here (the
runner, on whichever machine runs the notebook; the report after each run;
``diff``) load it without that backend.

Part of the far side (``executors.far_side.FAR_SIDE``): Python 3.9 and newer, nothing else of mm4watch.
"""

from __future__ import annotations

import sys
from types import ModuleType

_UNUSED = ("rfc3987_syntax",)  # jsonschema's IRI checker: without it, the "iri" format goes unchecked


def _leave_out_unused() -> None:
    if "jsonschema" not in sys.modules:  # once imported, jsonschema has made its choice
        for name in _UNUSED:
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # None: "import name" fails, so it is skipped


def nbformat() -> ModuleType:
    """``import nbformat``, with jsonschema's unused IRI backend left out of this process."""
    _leave_out_unused()
    import nbformat as module

    return module


# Python linked against LibreSSL (a Mac's stock /usr/bin/python3: LibreSSL 2.8.3) makes urllib3 2 warn
# at import, from requests, which papermill imports: a line in every run.log that asks nothing of anyone.
# Matched by its text: naming urllib3's warning class would import urllib3 to say it.
LIBRESSL_WARNING = r"urllib3 v2 only supports OpenSSL 1\.1\.1\+"


def quiet_libressl() -> None:
    import warnings

    warnings.filterwarnings("ignore", message=LIBRESSL_WARNING)


def papermill() -> ModuleType:
    """``import papermill`` (which imports nbformat), with the same backend left out, and urllib3's
    warning about LibreSSL kept out of the run's log."""
    _leave_out_unused()
    quiet_libressl()
    import papermill as module

    return module
