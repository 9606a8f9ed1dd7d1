"""Executor types by name, from entry points: the built-in four and any installed plug-in alike.

A package adds an executor by declaring, in its own ``pyproject.toml``::

    [project.entry-points."mm4watch.executors"]
    mybox = "mybox_mm4:MyBoxExecutor"

where ``MyBoxExecutor`` subclasses ``mm4watch.executors.base.Executor`` and names its settings
class (a frozen dataclass built on ``config.ExecutorConfig``) as ``config_class``. ``mm4.toml``
then takes ``type = "mybox"`` with the keys that dataclass declares. Entry points are read once per
process and only when an executor is named; an executor's module is imported only when its type is used.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from .config import ExecutorConfig

GROUP = "mm4watch.executors"
ALIASES = {"ssh": "native"}  # the native executor's first name (both remote types go over ssh)


@functools.cache
def _registered() -> dict[str, EntryPoint]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    """Every executor type this installation can run, sorted."""
    return sorted(_registered())


def canonical(kind: str) -> str:
    return ALIASES.get(kind, kind)


def executor_class(kind: str) -> Any:
    """The executor class registered for ``kind``; KeyError when none is."""
    kind = canonical(kind)
    entry = _registered().get(kind)
    if entry is None:
        if not _registered():
            raise ConfigError(
                f"no executor types are registered (looked for entry points {GROUP!r}): mm4watch's own "
                'package metadata is missing; reinstall it (pip install mm4watch, or pip install -e ".")'
            )
        raise KeyError(kind)
    try:
        found = entry.load()
    except Exception as exc:  # a plug-in that does not import: said, with the package to fix
        raise ConfigError(
            f"executor type {kind!r} ({entry.value}, from {_package(entry)}) does not load: "
            f"{type(exc).__name__}: {exc}; reinstall or remove that package"
        ) from None
    from .config import ExecutorConfig

    settings = getattr(found, "config_class", None)
    if not (isinstance(settings, type) and issubclass(settings, ExecutorConfig)):
        raise ConfigError(
            f"executor type {kind!r} ({entry.value}, from {_package(entry)}) has no config_class built on "
            "mm4watch.core.config.ExecutorConfig"
        )
    return found


def config_class(kind: str) -> type[ExecutorConfig]:
    return executor_class(kind).config_class


def _package(entry: EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown package"
