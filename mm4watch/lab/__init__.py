"""Inside JupyterLab: a Jupyter Server extension that serves what mm4watch knows of the project the
server runs in, as JSON under ``/mm4watch/api/`` (behind Jupyter's own login and XSRF checks), and
pushes "something changed" to the page from one watcher in the server.

Enabled on install by ``jupyter-config/jupyter_server_config.d/mm4watch.json`` (in the wheel's
``etc/jupyter``), or by hand: ``jupyter server extension enable mm4watch.lab``.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "mm4watch.lab"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .handlers import setup

    setup(serverapp)
