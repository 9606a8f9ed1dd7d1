"""What a run is doing right now: its phase, the cell it is in, how long it has been going.

The executors say their phases (``Job.on_phase``: preparing, building on the Mini,
starting the kernel, bringing results home); the cell comes from the run's own log
(papermill writes ``Executing Cell N`` there). One thread watches both, four times a
second, and

- on a terminal draws one live line (rich), cleared when the run ends;
- off a terminal writes one plain line per phase to stderr;
- with ``--log-output`` also streams the notebook's own output as it arrives;
- always keeps ``.mm4/active/<run key>.phase`` current, which ``mm4watch status`` shows
  for runs the daemon started.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from ..core.fsutil import atomic_write_text
from ..core.terminal import visible
from ..executors import HOME_PHASE

_CELL = re.compile(r"^Executing Cell (\d+)-", re.MULTILINE)
_MARKERS = re.compile(r"^(Executing Cell \d+-+|Ending Cell \d+-+|Executing notebook with kernel: .*|"
                      r"Input Notebook: .*|Output Notebook: .*|Working directory: .*|\[IPKernelApp\] .*)$")  # fmt: skip
TICK_S = 0.25


def cell_labels(notebook: Path, parameters: dict[str, Any]) -> list[str]:
    """A short label per cell, in the order papermill numbers them (its injected parameters cell included)."""
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return []
    labels = [_first_line(c) for c in cells]
    if parameters:
        tagged = [i for i, c in enumerate(cells) if "parameters" in (c.get("metadata", {}).get("tags") or [])]
        labels.insert(tagged[0] + 1 if tagged else 0, "(parameters)")
    return labels


def _first_line(cell: dict[str, Any]) -> str:
    if cell.get("cell_type") != "code":
        return f"({cell.get('cell_type', 'cell')})"
    source = cell.get("source", "")
    text = source if isinstance(source, str) else "".join(source)
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()[:60]
    return "(comments only)"


class Progress:
    """Watches one run; ``start()`` before it runs, ``stop()`` after (see the module docstring)."""

    def __init__(
        self,
        log_path: Path,
        labels: list[str],
        *,
        live: bool = False,
        plain: IO[str] | None = None,
        log_output: bool = False,
        phase_file: Path | None = None,
    ) -> None:
        self.log_path, self.labels = log_path, labels
        self.live, self.plain, self.log_output, self.phase_file = live, plain, log_output, phase_file
        self.phase = "starting"
        self.place = ""  # which machine of a pool runs it (the Swarm executor says)
        self.cell: int | None = None
        self.started = time.monotonic()
        self._offset = 0
        self._shown = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mm4-progress", daemon=True)
        self._live: Any = None

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        if phase != "running":
            self.cell = None

    def set_place(self, place: str) -> None:
        self.place = place

    def line(self) -> str:
        what = self.phase
        if self.cell is not None:
            total = f"/{len(self.labels)}" if self.labels else ""
            label = self.labels[self.cell - 1] if 0 < self.cell <= len(self.labels) else ""
            what = f"cell {self.cell}{total}" + (f": {label}" if label else "")
        if self.place:
            what = f"on {self.place}: {what}"
        elapsed = int(time.monotonic() - self.started)
        return f"{what}  {elapsed // 60}:{elapsed % 60:02d}"

    def start(self) -> Progress:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live("", console=Console(stderr=True), transient=True, refresh_per_second=4)
            self._live.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._tick()  # the last lines the notebook printed
        if self._live is not None:
            self._live.stop()  # transient: the line goes; the result is printed once, by the caller
        if self.phase_file is not None:
            self.phase_file.unlink(missing_ok=True)

    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
            self._tick()

    def _tick(self) -> None:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read().decode("utf-8", "replace")
        except OSError:
            chunk = ""
        if chunk:
            cut = chunk.rfind("\n") + 1  # whole lines only; the rest comes next time
            chunk, self._offset = chunk[:cut], self._offset + len(chunk[:cut].encode("utf-8"))
            cells = _CELL.findall(chunk)
            if cells and self.phase != HOME_PHASE:  # the log's last lines may come after the run ended there
                self.phase, self.cell = "running", int(cells[-1])
            if self.log_output:
                self._echo(chunk)
        shown = self.line().rsplit("  ", 1)[0]
        if shown != self._shown:
            self._shown = shown
            if self.plain is not None and not self.live:
                print(f"mm4watch: {visible(shown)}", file=self.plain, flush=True)
            if self.phase_file is not None:
                try:
                    atomic_write_text(self.phase_file, shown + "\n")
                except OSError:
                    pass
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(visible(self.line())))  # text, never markup: a cell's code may hold [brackets]

    def _echo(self, chunk: str) -> None:
        lines = [ln for ln in chunk.splitlines() if not _MARKERS.match(ln) and not ln.startswith("[20")]
        if not lines:
            return
        text = visible("\n".join(lines), keep_sgr=True)  # the notebook's colours, never its other escapes
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)
