"""Executor types by name, from entry points: the built-in five and any installed plug-in alike.

A package adds an executor by declaring, in its own ``pyproject.toml``::

    [project.entry-points."mm4watch.executors"]
    mybox = "mybox_mm4:MyBoxExecutor"

where ``MyBoxExecutor`` subclasses ``mm4watch.executors.base.Executor`` and names its settings
class (a frozen dataclass built on ``config.ExecutorConfig``) as ``config_class``. ``mm4.toml``
then takes ``type = "mybox"`` with the keys that dataclass declares. Entry points are read once per
process and only when an executor is named, by a scan of the installed packages' metadata
(``*.dist-info/entry_points.txt`` on ``sys.path``, as importlib.metadata finds them, without its
10 ms import; importlib.metadata itself when the scan finds none); an executor's module is
imported only when its type is used.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import ExecutorConfig

GROUP = "mm4watch.executors"
ALIASES = {"ssh": "native"}  # the native executor's first name (both remote types go over ssh)


@dataclass(frozen=True)
class Entry:
    name: str
    value: str  # "module:attribute"
    package: str  # "name version", for messages

    def load(self) -> Any:
        module, _, attribute = self.value.partition(":")
        found: Any = importlib.import_module(module.strip())
        for part in attribute.strip().split(".") if attribute.strip() else ():
            found = getattr(found, part)
        return found


@functools.cache
def _registered() -> dict[str, Entry]:
    found = _scan(sys.path)
    if not found:  # metadata the scan does not read (a zip, an unusual finder): the standard way
        from importlib.metadata import entry_points

        for ep in entry_points(group=GROUP):
            dist = getattr(ep, "dist", None)
            found.setdefault(ep.name, Entry(ep.name, ep.value, f"{dist.name} {dist.version}" if dist else "?"))
    return found


def _scan(paths: list[str]) -> dict[str, Entry]:
    """The entry points of ``GROUP`` in the packages installed along ``paths``; the first
    package of a name wins, as for imports."""
    found: dict[str, Entry] = {}
    seen: set[str] = set()
    for folder in paths:
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            continue
        for meta in names:
            if not meta.endswith((".dist-info", ".egg-info")):
                continue
            package = meta.rsplit(".", 1)[0]
            dist = package.split("-")[0].lower().replace("_", "-")
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(folder or ".", meta, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            for name, value in _group(text):
                found.setdefault(name, Entry(name, value, package.replace("-", " ", 1)))
    return found


def _group(text: str) -> list[tuple[str, str]]:
    """``name = value`` lines of the ``[GROUP]`` section of an entry_points.txt."""
    pairs, inside = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == GROUP
        elif inside and "=" in line and not line.startswith(("#", ";")):
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


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


def tag_options() -> dict[str, str]:
    """The tag options executor types add to the core ones (swarm's ``constraint``): option -> type.
    Each type's module is imported: asked only for an option the core does not know. A type that
    does not load adds none (``mm4watch doctor`` says why)."""
    found: dict[str, str] = {}
    for kind in names():
        try:
            declared = getattr(executor_class(kind), "tag_options", {})
        except (KeyError, ConfigError):
            continue
        for option in declared:
            found.setdefault(option, kind)
    return found


def helper(kind: str, name: str) -> Any:
    """The function behind helper ``name`` that executor type ``kind`` registers (``helpers``:
    name -> "module:function", called with the helper's arguments, returning its exit code)."""
    import importlib

    from .errors import UsageError

    try:
        where = dict(getattr(executor_class(kind), "helpers", {}))[name]
    except KeyError:
        raise UsageError(f"executor type {kind!r} registers no helper {name!r}") from None
    module, _, function = where.partition(":")
    return getattr(importlib.import_module(module), function)


def config_class(kind: str) -> type[ExecutorConfig]:
    return executor_class(kind).config_class


def _package(entry: Entry) -> str:
    return entry.package
