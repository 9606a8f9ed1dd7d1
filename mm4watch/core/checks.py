"""Checks of single values from mm4.toml: each returns the value or raises ``ValueError(reason)``.

``config`` turns the reason into ``mm4.toml:LINE: table.key <reason>``. An executor's settings
name their check with ``config.setting(check, default)``; a plug-in executor uses these same ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__} {value!r}")
    return value


def host(value: Any) -> str:
    given = text(value)
    where = given.split("://", 1)[1] if "://" in given else given
    if given.startswith("-") or where.startswith("-"):
        raise ValueError(f"is {given!r}: a host never begins with '-' (ssh would read it as an option)")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in given):
        raise ValueError(f"is {given!r}: a host has no spaces or control characters")
    return given


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


def name(value: Any) -> str:
    given = text(value)
    if not NAME.fullmatch(given):
        raise ValueError(f"{given!r} is not a valid name (letters, digits, '-' and '_')")
    return given


def rel_path(value: Any) -> str:
    given = text(value)
    if not given or Path(given).is_absolute() or ".." in Path(given).parts:
        raise ValueError(f"{given!r} must be a folder inside the project (a relative path, no '..')")
    return given


def rel_paths(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError("must be a folder name or a list of folder names")
    return [rel_path(item) for item in items]


def patterns(value: Any) -> list[str]:
    items = rel_paths(value)
    for item in items:
        if not item or item.startswith("/") or ".." in Path(item).parts:
            raise ValueError(f'{item!r}: give a pattern inside the run folder, e.g. "eval/*.json"')
    return items


def registry(value: Any) -> str:
    given = text(value)
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]+)?", given):
        raise ValueError(f'{given!r} is not a registry address; write host:port, e.g. "mini1.local:5000"')
    return given


def ssh_map(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) and v.startswith("ssh://") for v in value.values()):
        raise ValueError('must map node IDs or hostnames to ssh addresses: { "mini2" = "ssh://me@10.0.0.12" }')
    return MappingProxyType(dict(value))


def count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be a whole number, 0 or more (0: one run per ready node), not {value!r}")
    return value


def image_name(value: Any) -> str:
    given = text(value)
    if given and not re.fullmatch(r"[a-z0-9][a-z0-9._/-]*", given):
        raise ValueError(f"{given!r} is not a valid image name (lower case, digits, . _ / -)")
    return given


def abs_path(value: Any) -> str:
    given = text(value)
    if not given.startswith("/"):
        raise ValueError(f"{given!r} must be an absolute path on that machine")
    return given


def text_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError('must be a list of strings, e.g. ["-i", "~/.ssh/mini"]')
    return tuple(value)


def positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"must be a number above zero, not {value!r}")
    return float(value)


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"must be a whole number above zero, not {value!r}")
    return value


def memory(value: Any) -> str:
    given = text(value)
    if not re.fullmatch(r"\d+(\.\d+)?[bkmg]?", given.lower()):
        raise ValueError(f'{given!r} is not a memory size; write e.g. "8g" or "512m"')
    return given


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def size(value: Any) -> int:
    """A size in bytes: "20g", "512MB", "1.5t", or a whole number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    found = (
        re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text(value).lower()) if isinstance(value, str) else None
    )
    if not found or float(found.group(1)) <= 0:
        raise ValueError(f'{value!r} is not a size; write e.g. "20g", "500m" or "1.5t"')
    return int(float(found.group(1)) * _UNITS[found.group(2)])


def one_of(*choices: str) -> Any:
    """A check that takes one of ``choices``."""

    def check(value: Any) -> str:
        if value not in choices:
            quoted = [f'"{c}"' for c in choices]
            raise ValueError(f"is {value!r}; use {', '.join(quoted[:-1])} or {quoted[-1]}")
        return str(value)

    return check


def scheduler(value: Any) -> str:
    """A Dask scheduler's address: tcp://host:port or tls://host:port."""
    given = text(value)
    if not re.fullmatch(r"(tcp|tls)://[^\s/:]+(:\d+)?|(tcp|tls)://\[[0-9a-fA-F:]+\](:\d+)?", given):
        raise ValueError(f'is {given!r}; write the scheduler\'s address, e.g. "tls://mini-1.local:8786"')
    return given


def resources(value: Any) -> Mapping[str, float]:
    """What a run needs of a worker, as its --resources: { mps = 1 }."""
    if (
        not isinstance(value, dict)
        or not value
        or not all(
            isinstance(k, str) and k and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
            for k, v in value.items()
        )
    ):
        raise ValueError(f"must name what a run needs of a worker, each above zero, e.g. {{ mps = 1 }}, not {value!r}")
    return MappingProxyType({k: float(v) for k, v in value.items()})
