"""One watcher per server for the Lab extension: it looks at the project's state (the daemon's
file, the queue, the runs in progress and their phases, the results folder) a few times a second,
by modification times only, and tells every open page when something moved. Pages never poll the
disk themselves; with no page open it does nothing."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from ..core import config

TICK_S = 0.2  # how often the state is looked at while a page listens


class Watcher:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self.seen: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None
        self.place: tuple[float, config.Place] | None = None  # the project's folders, as of mm4.toml's stamp

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100)
        self.listeners.add(queue)
        if self.task is None or self.task.done():
            self.seen = self.look()
            self.task = asyncio.get_running_loop().create_task(self._watch())
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.listeners.discard(queue)

    async def _watch(self) -> None:
        while self.listeners:
            await asyncio.sleep(TICK_S)
            now = self.look()
            moved = sorted(name for name in set(now) | set(self.seen) if now.get(name) != self.seen.get(name))
            self.seen = now
            if moved:
                change = {"at": time.time(), "moved": moved}
                for queue in list(self.listeners):
                    if queue.full():  # a page that does not read: it gets the newest only
                        queue.get_nowait()
                    queue.put_nowait(change)

    def look(self) -> dict[str, float]:
        """Modification times (and sizes) of what says the project's state changed."""
        root, file = config.find_root(self.root)
        if file is None:
            return {}
        stamp = _stamp(file)
        if self.place is None or self.place[0] != stamp or self.place[1].root != root:
            self.place = (stamp, config.locate(root))  # mm4.toml read again only when it changed
        place = self.place[1]
        found: dict[str, float] = {"mm4.toml": stamp, "results": _stamp(place.results_dir)}
        for name in ("daemon.json", "queue.sqlite", "queue.sqlite-wal"):
            found[name] = _stamp(place.state_dir / name)
        try:
            with os.scandir(place.state_dir / "active") as entries:
                for entry in entries:
                    found[f"active/{entry.name}"] = _stamp(Path(entry.path))
        except OSError:
            pass
        return found


def _stamp(path: Path) -> float:
    try:
        st = path.stat()
    except OSError:
        return -1.0
    return st.st_mtime_ns / 1e9 + st.st_size * 1e-12
