"""How many runs at once each executor takes, as it says (``capacity()``: a pool asks its nodes).

Asked once per executor settings, then again each minute in the background: a start waits on
a pool's answer only the first time, and a changed mm4.toml (new settings) is asked afresh."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from ..core.config import Config, ExecutorConfig

ASK_AGAIN_S = 60.0

log = logging.getLogger("mm4watch.schedule.capacity")


class Capacity:
    def __init__(self, answered: Callable[[], None]) -> None:
        self._answered = answered  # called when a background answer may let another run start
        self._sizes: dict[str, tuple[int, float, ExecutorConfig]] = {}  # name: (runs, asked at, of settings)
        self._asking: set[str] = set()  # executors being asked again, in the background
        self._lock = threading.Lock()  # both, shared with those background questions

    def busy(self, config: Config, running: Iterable[str]) -> set[str]:
        """The executors that take no more runs now, given the executor of each run going on."""
        counts: dict[str, int] = {}
        for name in running:
            counts[name] = counts.get(name, 0) + 1
        busy = set()
        for name, n in counts.items():
            settings = config.executors.get(name)
            if n >= (self.limit(config, settings) if settings else 1):
                busy.add(name)
        return busy

    def limit(self, config: Config, settings: ExecutorConfig) -> int:
        with self._lock:
            cached = self._sizes.get(settings.name)
        if cached is None or cached[2] is not settings:
            cached = (_ask(config, settings), time.monotonic(), settings)
            with self._lock:
                self._sizes[settings.name] = cached
            return cached[0]
        with self._lock:
            again = time.monotonic() - cached[1] > ASK_AGAIN_S and settings.name not in self._asking
            if again:
                self._asking.add(settings.name)
        if again:
            threading.Thread(
                target=self._ask_again, args=(config, settings), name=f"mm4-capacity-{settings.name}", daemon=True
            ).start()
        return cached[0]

    def _ask_again(self, config: Config, settings: ExecutorConfig) -> None:
        try:
            size = _ask(config, settings)
            with self._lock:  # a newer config's answer may be there by now: it stays
                if self._sizes.get(settings.name, (0, 0.0, None))[2] is settings:
                    self._sizes[settings.name] = (size, time.monotonic(), settings)
        finally:
            with self._lock:
                self._asking.discard(settings.name)
            self._answered()


def _ask(config: Config, settings: ExecutorConfig) -> int:
    from .. import executors

    try:
        return max(1, int(executors.get(settings, config).capacity()))
    except Exception as exc:  # a plug-in's own failure never stops the daemon
        log.warning("executor %s cannot say how many runs it takes (%s): one at a time", settings.name, exc)
        return 1
