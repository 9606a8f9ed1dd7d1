"""The opt-in tag: a comment line ``# mm4: remote`` in a code cell.

Grammar (case-insensitive, spaces optional around ':')::

    # mm4: remote [key=value ...]      keys: TAG_OPTIONS (executor, timeout, needs, sweep), and those an
                                       executor type declares (``tag_options``: swarm's constraint)

Only comments count: the tag in a markdown or raw cell, in an output, or inside
a string literal does not. Pure functions over a notebook's bytes (``read_tag``,
the one way in) or its parsed JSON; no file access.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .durations import parse_duration
from .errors import NotebookError

TAG_OPTIONS = ("executor", "timeout", "needs", "sweep")  # the core's; executor types add theirs (plugins.tag_options)
_TAG = re.compile(r"#\s*mm4\s*:\s*remote(?![\w-])(.*)$", re.IGNORECASE)
_OPTION = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)")


@dataclass(frozen=True)
class Tag:
    cell: int  # index among all cells
    line: int  # 1-based line inside the cell
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def executor(self) -> str | None:
        return self.options.get("executor")

    @property
    def needs(self) -> tuple[str, ...]:
        """Notebooks whose latest successful run this one loads (``needs=10_clean,23_train``)."""
        value = self.options.get("needs") or ""
        return tuple(Path(part).stem for part in value.split(",") if part.strip())

    @property
    def sweep(self) -> list[str]:
        """A save or commit queues a sweep (``sweep=lr:0.1,0.01;depth:3,5``): each axis as ``-p`` has it."""
        value = self.options.get("sweep") or ""
        return [part.replace(":", "=", 1) for part in value.split(";") if part.strip()]

    @property
    def timeout_s(self) -> float | None:
        value = self.options.get("timeout")
        return parse_duration(value) if value else None


def read_tag(content: bytes, label: str) -> tuple[dict[str, Any], Tag | None]:
    """The notebook in ``content`` (a file's bytes) and its tag, None when untagged: the one way every
    trigger, check and run reads a notebook. ``NotebookError`` names ``label`` and what to fix when
    the bytes are not UTF-8, not a notebook, or the tag is malformed."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise NotebookError(f"{label}: not UTF-8 text; a notebook is JSON in UTF-8") from None
    nb = loads_notebook(text, label)
    return nb, find_tag(nb, label)


def loads_notebook(text: str, label: str = "notebook") -> dict[str, Any]:
    """Parse notebook JSON and check the parts mm4watch reads."""
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(
            f"{label}: not valid notebook JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "open it in Jupyter or fix the file, then save again"
        ) from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        hint = (
            " (nbformat 3 is not supported: open and save it in a current Jupyter)"
            if isinstance(nb, dict) and "worksheets" in nb
            else ""
        )
        raise NotebookError(f"{label}: not a Jupyter notebook: no 'cells' list{hint}")
    if not isinstance(nb.get("metadata", {}), dict):
        raise NotebookError(f"{label}: its metadata is not an object; open it in Jupyter or fix the file")
    for index, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            raise NotebookError(f"{label}: cell {index} is not a notebook cell (no cell_type)")
        if not isinstance(cell.get("metadata", {}), dict):
            raise NotebookError(f"{label}: cell {index}'s metadata is not an object; fix the file, then save again")
        source = cell.get("source", "")
        if not isinstance(source, str) and not (isinstance(source, list) and all(isinstance(s, str) for s in source)):
            raise NotebookError(f"{label}: cell {index} has a source that is neither text nor a list of lines")
    return nb


def cell_source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def code_cells(nb: Mapping[str, Any]) -> list[tuple[int, str]]:
    return [(i, cell_source(c)) for i, c in enumerate(nb["cells"]) if c.get("cell_type") == "code"]


def code_hash(nb: Mapping[str, Any]) -> str:
    """Hash of what runs: code cells' sources only (no outputs, no metadata)."""
    digest = hashlib.sha256()
    for _, source in code_cells(nb):
        digest.update(source.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def find_tag(nb: Mapping[str, Any], label: str = "notebook") -> Tag | None:
    """The first tag in a code cell, or None. Bad options raise NotebookError."""
    for index, source in code_cells(nb):
        for line, comment in _comments(source):
            match = _TAG.match(comment)
            if match:
                return Tag(index, line, MappingProxyType(_options(match.group(1), label, index, line)))
    return None


_MM4_WORD = re.compile(r"#\s*mm\s*4\s*[:;.,-]?\s*([A-Za-z]*)", re.IGNORECASE)


def _meant_as_tag(comment: str) -> bool:
    import difflib

    match = _MM4_WORD.match(comment)
    if not match:
        return False
    word = match.group(1).lower()
    return difflib.SequenceMatcher(None, word, "remote").ratio() >= 0.6


def near_misses(nb: Mapping[str, Any], label: str = "notebook") -> list[str]:
    """Comments that look meant as the tag but are not one (``# mm4: remtoe``, ``#mm4 remote``):
    one message each, naming the cell (as Jupyter counts code cells) and the line."""
    found = []
    for number, (_, source) in enumerate(code_cells(nb), start=1):
        for line, comment in _comments(source):
            if _meant_as_tag(comment) and not _TAG.match(comment):
                found.append(
                    f"{label}: code cell {number}, line {line}: {comment.strip()!r} looks like the mm4watch tag "
                    "but is not one; write '# mm4: remote' (options after it: executor=NAME timeout=30m)"
                )
    return found


def _options(rest: str, label: str, cell: int, line: int) -> dict[str, str]:
    options: dict[str, str] = {}
    where = f"{label}: cell {cell}, line {line}"
    for word in rest.split():
        match = _OPTION.fullmatch(word)
        if not match:
            raise NotebookError(f"{where}: tag option {word!r} is not key=value (e.g. executor=mini timeout=30m)")
        key, value = match.group(1).lower(), match.group(2)
        if key not in TAG_OPTIONS:
            from . import plugins

            added = plugins.tag_options()
            if key not in added:
                known = ", ".join([*TAG_OPTIONS, *(f"{o} ({t})" for o, t in sorted(added.items()))])
                raise NotebookError(f"{where}: unknown tag option {key!r}; known: {known}")
        if key == "sweep" and not re.fullmatch(r"[A-Za-z_]\w*:[^;:]+(;[A-Za-z_]\w*:[^;:]+)*;?", value):
            raise NotebookError(
                f"{where}: sweep={value!r} is not KEY:V1,V2 (axes apart with ';': sweep=lr:0.1,0.01;depth:3,5)"
            )
        if key == "timeout":
            try:
                parse_duration(value)
            except ValueError as exc:
                raise NotebookError(f"{where}: timeout {exc}") from None
        options[key] = value
    return options


def _comments(source: str) -> list[tuple[int, str]]:
    """(line, text) of comments that stand alone on their line.

    Tokenizing keeps '# mm4: remote' inside a string literal from counting.
    IPython syntax (%magic, !shell) is blanked first; a cell that still does
    not tokenize (a %%bash cell, a syntax error) falls back to plain lines.
    """
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        lines[0] = ""
    cleaned = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in lines) + "\n"
    found: list[tuple[int, str]] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(cleaned).readline):
            if tok.type == tokenize.COMMENT and not tok.line[: tok.start[1]].strip():
                found.append((tok.start[0], tok.string))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [(n, ln.strip()) for n, ln in enumerate(lines, start=1) if ln.lstrip().startswith("#")]
    return found
