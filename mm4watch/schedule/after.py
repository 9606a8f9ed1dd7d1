"""What listens for a run's end: the report page, refreshed once for runs ending together, and
the notification that says how it went."""

from __future__ import annotations

import logging
import time

from ..core import proc
from ..core.config import Config
from ..queue import notify
from ..queue.schema import Entry
from ..results.records import read_record

REPORT_LOG_NAME = "report.log"
REPORT_AFTER_S = 2.0  # the report is refreshed this long after the last run ended (runs ending together: once)
REPORT_WAIT_MAX_S = 20.0  # ... and no later than this after the first run it has not shown

log = logging.getLogger("mm4watch.schedule.after")


class ReportPage:
    """results/index.html anew ``REPORT_AFTER_S`` after a run ends, with any run that ends
    meanwhile: one nbconvert process for both, in a process of its own at a low priority (out of
    the daemon, and out of the way of the next runs' start)."""

    def __init__(self, config: Config) -> None:
        self.config = config  # the daemon puts a reloaded mm4.toml's here
        self._due: tuple[float, float] | None = None  # (refresh at, first run not shown ended at)

    def run_ended(self, entry: Entry) -> None:
        now = time.monotonic()
        first = self._due[1] if self._due else now
        self._due = (min(now + REPORT_AFTER_S, first + REPORT_WAIT_MAX_S), first)

    def due_in(self) -> float | None:
        """Seconds until the refresh is due (None: nothing to show)."""
        return None if self._due is None else self._due[0] - time.monotonic()

    def refresh_if_due(self, now: bool = False) -> None:
        if self._due is None or not (now or time.monotonic() >= self._due[0]):
            return
        self._due = None
        if not self.config.results.report:
            return
        with open(self.config.state_dir / REPORT_LOG_NAME, "ab") as out:
            proc.detach(
                proc.command("report", "--quiet", "--background"),
                cwd=self.config.root,
                stdout=out,
            )


class Notifier:
    """A notification for each run that ended (``[daemon] notify``), and for the daemon's own news."""

    def __init__(self, config: Config) -> None:
        self.config = config  # the daemon puts a reloaded mm4.toml's here

    def run_ended(self, entry: Entry) -> None:
        if not self.config.daemon.notify or not entry.run_id:
            return
        try:
            record = read_record(self.config.results_dir / entry.run_id)
            notify.send(self.config, record, self.config.results_dir / entry.run_id)
        except Exception:
            log.exception("notification failed")

    def tell(self, title: str, body: str) -> None:
        """A notification about the daemon itself (not a run's end), when notifications are on."""
        if not self.config.daemon.notify:
            return
        try:
            notify.say(self.config, title, body[:300])
        except Exception:
            log.exception("notification failed")
