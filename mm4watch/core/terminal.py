"""What reaches the terminal: never a raw control character from a run, a record or a file name.

Notebook names, commit messages, error texts and log lines come from files a
run wrote or a person named. Printed raw, an escape sequence in one retitles
the terminal (OSC 0), writes the clipboard (OSC 52 in some terminals) or
hides text (a carriage return, a cursor move). ``visible`` shows every C0 and
C1 control, ESC and DEL as ``\\xNN`` (tab and newline stay); ``logs`` may keep
colours (SGR, ``ESC [ ... m``) and nothing else. The command line writes all
its output through ``Visible`` (``cli.main``), so no command can forget.
"""

from __future__ import annotations

import re
from typing import IO, Any

_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _shown(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def visible(text: str, *, keep_sgr: bool = False) -> str:
    """``text`` with its control characters shown, not obeyed (colours kept when ``keep_sgr``)."""
    if not keep_sgr:
        return _CONTROL.sub(_shown, text)
    parts = []
    last = 0
    for match in _SGR.finditer(text):
        parts.append(_CONTROL.sub(_shown, text[last : match.start()]))
        parts.append(match.group())
        last = match.end()
    parts.append(_CONTROL.sub(_shown, text[last:]))
    return "".join(parts)


class Visible:
    """A text stream that passes everything through ``visible``: the command line's stdout and stderr."""

    def __init__(self, stream: IO[str], *, keep_sgr: bool = False) -> None:
        self.raw = stream
        self.keep_sgr = keep_sgr

    def write(self, text: str) -> int:
        self.raw.write(visible(text, keep_sgr=self.keep_sgr))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding...
        return getattr(self.raw, name)
