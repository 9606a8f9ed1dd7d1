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
