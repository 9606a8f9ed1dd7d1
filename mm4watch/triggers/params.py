"""Parameters from the command line, parsed as papermill parses them (pure).

    -p KEY=VALUE      True / False / None, an int, a float, else text (papermill's -p); a value
                      that starts with [ or { is read as JSON/YAML, and is an error if it does not parse
    -y KEY YAML       a YAML value (a list, a mapping, a quoted string...)
    -r KEY RAW        text, never converted
    -f FILE           a YAML file holding a mapping of parameters

Later sources win, in papermill's order: files, then -y, then -p, then -r.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import UsageError


def resolve(raw: str) -> Any:
    """A ``-p`` value: papermill's conversion, plus JSON/YAML for what looks like a list or mapping."""
    if raw in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[raw]
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    if raw.lstrip().startswith(("[", "{")):
        return _yaml(raw, f"value {raw!r}")
    return raw


def key_value(text: str, flag: str = "-p") -> tuple[str, str]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise UsageError(f"parameter {text!r} is not KEY=VALUE with KEY a Python name (e.g. {flag} epochs=10)")
    return _name(key, flag), raw


def _yaml(text: str, what: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise UsageError(f"{what} looks like JSON or YAML but does not parse: {detail}") from None


def _name(key: str, flag: str) -> str:
    import keyword

    if not key.isidentifier():
        raise UsageError(f"{flag} {key!r}: a parameter's name must be a Python name")
    if keyword.iskeyword(key):  # soft keywords (match, case, type, _) are names an assignment takes
        # papermill writes `class = 1` into the notebook: a SyntaxError in the run
        raise UsageError(f"{flag} {key}=...: {key!r} is a Python keyword, not a variable a notebook can have")
    return key


def collect(
    plain: list[str] | None = None,
    yaml_values: list[list[str]] | None = None,
    raw: list[list[str]] | None = None,
    files: list[str] | None = None,
) -> dict[str, Any]:
    """Every parameter given, merged in papermill's order."""
    found: dict[str, Any] = {}
    for name in files or []:
        path = Path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"-f {name}: cannot read it: {exc.strerror or exc}") from None
        data = _yaml(text, f"-f {name}") if text.strip() else {}
        if not isinstance(data, dict):
            raise UsageError(f"-f {name}: must hold a mapping of parameter names to values (key: value lines)")
        for key, value in data.items():
            found[_name(str(key), f"-f {name}:")] = value
    for key, text in yaml_values or []:
        found[_name(key, "-y")] = _yaml(text, f"-y {key}")
    for item in plain or []:
        key, value = key_value(item)
        found[key] = resolve(value)
    for key, text in raw or []:
        found[_name(key, "-r")] = text
    return found


def grid(
    plain: list[str] | None = None, yaml_values: list[list[str]] | None = None, paired: bool = False
) -> list[dict[str, Any]]:
    """A sweep's parameter sets: each ``-p KEY=V1,V2`` value split on commas and each part converted
    as ``-p`` converts it; each ``-y KEY '[V1, V2]'`` a YAML list. Every combination (the first key
    varies slowest), or with ``paired`` the values taken side by side (the lists as long as each other)."""
    import itertools

    axes: dict[str, list[Any]] = {}
    for key, text in yaml_values or []:
        values = _yaml(text, f"-y {key}")
        if not isinstance(values, list) or not values:
            raise UsageError(f"-y {key}: a sweep takes a YAML list of values, e.g. -y {key} '[1, 2]'")
        axes[_name(key, "-y")] = values
    for item in plain or []:
        key, text = key_value(item)
        parts = [part.strip() for part in text.split(",")]
        if any(part == "" for part in parts):
            raise UsageError(f"-p {item}: an empty value between commas (a list of values: -p {key}=1,2,3)")
        axes[key] = [resolve(part) for part in parts]
    if not axes:
        raise UsageError("a sweep needs parameters to vary: -p KEY=V1,V2 (or -y KEY '[V1, V2]')")
    keys = list(axes)
    if paired:
        sizes = {key: len(values) for key, values in axes.items()}
        if len(set(sizes.values())) > 1:
            said = ", ".join(f"{key} has {n}" for key, n in sizes.items())
            raise UsageError(f"--zip pairs values side by side: every list must be as long ({said})")
        rows = list(zip(*axes.values(), strict=True))
    else:
        rows = list(itertools.product(*axes.values()))
    return [dict(zip(keys, row, strict=True)) for row in rows]
