"""Executors run one prepared notebook and leave ``executed.ipynb`` in the run folder.

``get(config)`` picks the implementation by the executor's ``type`` from the
registry of entry points (``core.plugins``: the built-in five and any plug-in);
each type lives in its own module and is imported only when used. Every one is
built on ``base.Executor``: the shared steps live there once, each module writes
only its transport and its settings class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.config import Config, ExecutorConfig
from ..core.errors import ConfigError
from ..results.records import Status

if TYPE_CHECKING:
    from ..remote.mirror import Inputs
    from .base import Executor


HOME_PHASE = "bringing results home"  # the phase after the run ended there: its log's last lines may still come


@dataclass(frozen=True)
class Job:
    run_id: str
    input_path: Path  # a snapshot of the notebook, outside the run folder
    run_dir: Path  # the notebook's output folder; executed.ipynb goes here
    log_path: Path
    cwd: Path  # the notebook's own folder
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 7200.0
    kernel: str | None = None
    record_environment: bool = True  # environment.txt beside the result ([run] environment)
    image: str | None = None  # container executors: use this image if the engine still has it
    earlier: Inputs | None = None  # earlier runs to make visible there, read-only (remote executors)
    tag: Mapping[str, str] = field(default_factory=dict)  # the notebook's tag options (an executor's own: tag_options)
    avoid: tuple[str, ...] = ()  # a pool's machines this run lost: the next attempt goes elsewhere
    reached: list[Any] = field(default_factory=list)  # what check() reached (a connection): the first attempt's
    on_phase: Callable[[str], None] | None = None  # told what the run is doing: "building on mini", ...
    on_place: Callable[[str], None] | None = None  # told which machine of a pool runs it
    lost: list[str] = field(default_factory=list)  # the machine went away mid-run: what happened, in words
    said: list[str] = field(default_factory=list)  # the phase said last (in a list: a Job is frozen)
    kept: list[str] = field(default_factory=list)  # what holds its files on that machine, kept there for `fetch`

    def phase(self, text: str) -> None:
        self.said[:] = [text]
        if self.on_phase is not None:
            self.on_phase(text)

    @property
    def doing(self) -> str:
        """What the run was doing, as last said ("building on mini")."""
        return self.said[-1] if self.said else ""

    def place(self, where: str) -> None:
        if self.on_place is not None:
            self.on_place(where)

    @property
    def key(self) -> str:
        """The run's name for engines and shells (``names.run_key``): never the raw id."""
        from ..core.names import run_key

        return run_key(self.run_id)


@dataclass(frozen=True)
class Outcome:
    status: Status  # succeeded, failed, timeout, cancelled, interrupted
    error: dict[str, Any] | None = None  # {cell, ename, evalue}
    executor: dict[str, Any] = field(default_factory=dict)  # what the run learnt: engine, image...


def get(settings: ExecutorConfig, config: Config) -> Executor[Any]:
    """The executor for ``settings``: the class its type registers (``core.plugins``)."""
    from ..core import plugins

    try:
        cls = plugins.executor_class(settings.type)
    except KeyError:
        raise ConfigError(
            f"executor {settings.name!r} has type {settings.type!r}, which no installed package provides "
            f"(known: {', '.join(plugins.names())}); install its package, or use another executor"
        ) from None
    return cls(settings, config)
