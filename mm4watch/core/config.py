"""mm4.toml and the environment: the one place on this machine that reads either.

(Copying the whole environment into a child process is not reading it: the
local runner and notification commands inherit it. What a run is told, on
whichever machine runs it, is ``runenv``'s.)

The file is found by walking up from a folder, like git finds ``.git``. It is
read with ``tomllib`` and validated into frozen dataclasses; every error names
the file, the line and the key. With no mm4.toml the defaults apply and the
built-in ``local`` executor runs notebooks on this machine.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, NoReturn

from . import checks, plugins
from .durations import parse_duration
from .errors import ConfigError
from .names import project_key
from .runenv import ENV_OUTPUT_DIR, ENV_PROJECT_DIR, ENV_RESULTS_DIR, ENV_RUN_ID, STATE_DIR  # noqa: F401 (what a run is told)

CONFIG_NAME = "mm4.toml"
DEFAULT_TIMEOUT_S = 2 * 3600.0
MIRROR_MODES = ("latest", "all", "needs", "none")

# Environment variables mm4watch reads (all of them, here and nowhere else).
ENV_EXECUTOR = "MM4_EXECUTOR"


def env(name: str) -> str | None:
    """An environment variable, None when unset or empty."""
    value = os.environ.get(name)
    return value if value else None


def home() -> Path:
    return Path.home()


def docker_config_dir() -> Path:
    """Where the docker CLI keeps its config and contexts."""
    return Path(env("DOCKER_CONFIG") or home() / ".docker")


class ConfigProblem(ValueError):
    """Raised by ``ExecutorConfig.check``: which key (None: the whole table) and what is wrong."""

    def __init__(self, key: str | None, reason: str) -> None:
        super().__init__(reason)
        self.key, self.reason = key, reason


def setting(check: Callable[[Any], Any], default: Any = None, *, key: str | None = None, factory: Any = None) -> Any:
    """A key an executor takes in mm4.toml: the dataclass field, its check (``checks``), and its
    name in the file when that differs from the field's (``harvest_every`` for ``harvest_every_s``)."""
    meta = {"check": check, "key": key}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


class Settings:
    """A table of mm4.toml as a frozen dataclass: each ``setting`` field is a key it takes, with its
    check and default, declared once (the sections below, and every executor's settings)."""

    not_keys: ClassVar[frozenset[str]] = frozenset()  # keys of a base class this one does not take
    renamed: ClassVar[dict[str, str]] = {}  # a key's first name -> its name now: both are read

    @classmethod
    def keys(cls) -> dict[str, tuple[str, Callable[[Any], Any]]]:
        """Each key mm4.toml takes for this table: (field name, check)."""
        found = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if "check" in f.metadata:
                key = f.metadata["key"] or f.name
                if key not in cls.not_keys:
                    found[key] = (f.name, f.metadata["check"])
        for old, new in cls.renamed.items():
            found.setdefault(old, found[new])
        return found

    def check(self) -> None:
        """Checks across keys; raise ``ConfigProblem(key, reason)``."""


@dataclass(frozen=True)
class ExecutorConfig(Settings):
    """What every executor has. Each type's settings are a frozen dataclass built on this one, in
    its executor's module (or a plug-in's); its ``setting`` fields are the keys mm4.toml takes."""

    name: str
    type: str
    harvest_every_s: float = setting(parse_duration, 60.0, key="harvest_every")  # partial results home this often
    concurrency: int = setting(checks.positive_int, 1)  # runs at once on this executor (the daemon)


def _tuple(check: Callable[[Any], list[str]]) -> Callable[[Any], tuple[str, ...]]:
    return lambda value: tuple(check(value))


@dataclass(frozen=True)
class ProjectConfig(Settings):
    """[project]: where a project keeps its notebooks, results and data, and its image."""

    notebooks: tuple[str, ...] = setting(_tuple(checks.rel_paths), ("notebooks",))  # folders watched for saves
    results: str = setting(checks.rel_path, "results")
    data: str = setting(checks.rel_path, "data")
    image: str = setting(checks.image_name, "")  # the run image's name (default: mm4-<project key>)
    dockerfile: str = setting(checks.rel_path, "Dockerfile")


@dataclass(frozen=True)
class RunConfig(Settings):
    """[run]: what a run gets unless its notebook or the command line says otherwise."""

    executor: str = setting(checks.name, "local")
    timeout_s: float = setting(parse_duration, DEFAULT_TIMEOUT_S, key="timeout")
    kernel: str | None = setting(checks.text)
    results_mirror: str = setting(checks.one_of(*MIRROR_MODES), "latest")  # earlier results a remote run can see
    mirror_max: int | None = setting(checks.size)  # bytes the copy of earlier results may take on a remote machine
    retry_lost: int = setting(checks.count, 1)  # a run whose machine went away mid-run runs again this many times
    environment: bool = setting(checks.boolean, True)  # environment.txt: what the kernel ran with, in the run folder


@dataclass(frozen=True)
class ResultsConfig(Settings):
    """[results]: what a run folder's files tell, and the report page."""

    metrics: tuple[str, ...] = setting(
        _tuple(checks.patterns), ("metrics.json",)
    )  # JSON files whose numbers go into run.json
    report: bool = setting(checks.boolean, True)  # the daemon keeps results/index.html current after each run


@dataclass(frozen=True)
class DaemonConfig(Settings):
    """[daemon]: the watch daemon."""

    debounce_s: float = setting(
        parse_duration, 2.0, key="debounce"
    )  # quiet time after the last write before a save counts
    requeue_interrupted: bool = setting(checks.boolean, True)  # a run cut off by a crash runs again, once
    notify: bool = setting(checks.boolean, True)  # say when a run ends (Notification Center / notify-send)
    notify_command: str | None = setting(checks.text)  # or run this, with MM4_RUN_* in its environment
    restart_running: bool = setting(checks.boolean, False)  # a newer save cancels the notebook's run in progress
    autostart: bool = setting(checks.boolean, False)  # the git hook starts the daemon when it is not running


SECTIONS: dict[str, type[Settings]] = {
    "project": ProjectConfig,
    "run": RunConfig,
    "daemon": DaemonConfig,
    "results": ResultsConfig,
}


@dataclass(frozen=True)
class Config:
    root: Path
    file: Path | None
    project: ProjectConfig = ProjectConfig()
    run: RunConfig = RunConfig()
    daemon: DaemonConfig = DaemonConfig()
    results: ResultsConfig = ResultsConfig()
    executors: Mapping[str, ExecutorConfig] = field(default_factory=lambda: MappingProxyType(_built_in()))
    code: Path | None = None  # one run's project files, when not the folder itself (a commit's tree)

    @property
    def code_root(self) -> Path:
        """Where the code a run ships or runs in is read: a commit's tree for a commit run, else the project."""
        return self.code or self.root

    @property
    def results_dir(self) -> Path:
        return self.root / self.project.results

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def unwatched(self) -> list[Path]:
        """Folders whose notebooks are never saves: results, data, mm4watch's own state."""
        return [self.results_dir, self.root / self.project.data, self.state_dir]

    @property
    def project_key(self) -> str:
        """This project's one name on other machines and engines (``names.project_key``)."""
        return project_key(self.root)

    @property
    def image_name(self) -> str:
        return self.project.image or f"mm4-{self.project_key}"

    def executor(self, name: str | None = None, *, tag: str | None = None) -> ExecutorConfig:
        """By precedence: ``name`` (the command line), MM4_EXECUTOR, the notebook's
        tag option, ``[run] executor``."""
        chosen = name or env(ENV_EXECUTOR) or tag or self.run.executor
        try:
            return self.executors[chosen]
        except KeyError:
            where = f"in {self.file}" if self.file else "(no mm4.toml found)"
            known = ", ".join(sorted(self.executors)) or "none"
            raise ConfigError(
                f"unknown executor {chosen!r} {where}; known executors: {known}. "
                f"Add an [executors.{chosen}] table or choose one of those."
            ) from None


def _built_in() -> dict[str, ExecutorConfig]:
    """With no [executors] table: the local executor, on this machine."""
    return {"local": plugins.config_class("local")("local", "local")}


# ---------------------------------------------------------------------------
# finding and loading


def find_root(start: Path | None = None) -> tuple[Path, Path | None]:
    """(project root, mm4.toml or None). Falls back to the git top level, then ``start``."""
    start = (start or Path.cwd()).resolve()
    if start.is_file():
        start = start.parent
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return folder, candidate
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder, None
    return start, None


@dataclass(frozen=True)
class Place:
    """Where a project keeps its state and results: known even when mm4.toml does not validate."""

    root: Path
    state_dir: Path
    results_dir: Path
    error: ConfigError | None = None  # why mm4.toml does not load, if it does not


def locate(start: Path | None = None) -> Place:
    """The project's folders for commands that need only them (status, stop, queue, logs, cancel):
    a broken mm4.toml never locks the user out of the daemon it configures."""
    try:
        cfg = load(start)
        return Place(cfg.root, cfg.state_dir, cfg.results_dir)
    except ConfigError as exc:
        root, file = find_root(start)
        results = "results"
        try:
            given = tomllib.loads(file.read_text(encoding="utf-8")).get("project", {}).get("results") if file else None
            if isinstance(given, str) and given.strip():
                results = given
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError):
            pass
        return Place(root, root / STATE_DIR, root / results, exc)


def load(start: Path | None = None) -> Config:
    root, file = find_root(start)
    if file is None:
        return Config(root=root, file=None)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        from .macos import tcc_hint

        hint = tcc_hint(exc) if isinstance(exc, OSError) else ""
        raise ConfigError(f"{file}: cannot read it: {exc}{hint}") from None
    return parse(text, root=root, file=file)


def parse(text: str, *, root: Path, file: Path | None = None) -> Config:
    """Validate the text of an mm4.toml (pure: no file access)."""
    label = str(file) if file else CONFIG_NAME
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: not valid TOML: {exc}") from None
    v = _Validator(label, text)
    v.only_keys(data, (), {*SECTIONS, "executors"})
    made = {name: _read(v, v.table(data, (name,)), (name,), kind, {}) for name, kind in SECTIONS.items()}
    run = made["run"]
    assert isinstance(run, RunConfig)

    executors: dict[str, ExecutorConfig] = {}
    for name, table in v.table(data, ("executors",)).items():
        path = ("executors", name)
        if not isinstance(table, dict):
            v.fail(path, f"must be a table: write [executors.{name}] with type = {_type_choices()}")
        if not checks.NAME.fullmatch(name):
            v.fail(path, "is not a valid executor name (letters, digits, '-' and '_')")
        executors[name] = _executor(v, name, table)
    executors = {**({} if "local" in executors else _built_in()), **executors}
    if run.executor not in executors:
        v.fail(
            ("run", "executor"),
            f"names executor {run.executor!r}, which is not defined; defined: {', '.join(sorted(executors))}",
        )
    return Config(root=root, file=file, executors=MappingProxyType(executors), **made)  # type: ignore[arg-type]


def _type_choices() -> str:
    quoted = [f'"{kind}"' for kind in plugins.names()]
    return " or ".join(quoted) if len(quoted) < 3 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _executor(v: _Validator, name: str, table: dict[str, Any]) -> ExecutorConfig:
    """One [executors.NAME] table, validated by the settings class its type registers."""
    path = ("executors", name)
    kind = v.get(table, (*path, "type"), checks.text, None)
    if kind is None:
        v.fail(path, f"needs a type: type = {_type_choices()}")
    try:
        settings = plugins.config_class(kind)
    except KeyError:
        v.fail((*path, "type"), f"is {kind!r}; use {_type_choices()}")
    made = _read(v, table, path, settings, {"name": name, "type": plugins.canonical(kind)})
    assert isinstance(made, ExecutorConfig)
    return made


def _read(
    v: _Validator, table: dict[str, Any], path: tuple[str, ...], kind: type[Settings], given: dict[str, Any]
) -> Settings:
    """One table by the keys ``kind`` declares: unknown keys, values and checks across keys said with
    their line; what it leaves out keeps the declared default."""
    keys = kind.keys()
    v.only_keys(table, path, {*given.keys() - {"name"}, *keys})
    values = {attr: v.get(table, (*path, key), check, None) for key, (attr, check) in keys.items() if key in table}
    try:
        made = kind(**given, **values)
        made.check()
    except ConfigProblem as problem:
        v.fail((*path, problem.key) if problem.key else path, problem.reason)
    return made


# ---------------------------------------------------------------------------
# error reporting with line numbers


class _Validator:
    def __init__(self, label: str, text: str) -> None:
        self.label = label
        self.text = text

    def line_of(self, path: tuple[str, ...]) -> int | None:
        lines = _key_lines(self.text)  # only on the way to an error: a valid file is never scanned
        while path:
            if path in lines:
                return lines[path]
            path = path[:-1]
        return None

    def fail(self, path: tuple[str, ...], reason: str) -> NoReturn:
        line = self.line_of(path)
        where = f"{self.label}:{line}" if line else self.label
        raise ConfigError(f"{where}: {'.'.join(path)} {reason}")

    def table(self, data: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
        value = data.get(path[-1], {})
        if not isinstance(value, dict):
            self.fail(path, f"must be a table ([{'.'.join(path)}]), not {type(value).__name__}")
        return value

    def get(self, table: dict[str, Any], path: tuple[str, ...], check: Callable[[Any], Any], default: Any) -> Any:
        if path[-1] not in table:
            return default
        try:
            return check(table[path[-1]])
        except ValueError as exc:
            self.fail(path, str(exc))

    def only_keys(self, table: dict[str, Any], path: tuple[str, ...], allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                self.fail((*path, key), f"is not a known key (known here: {hint})")


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")
_KEYLINE = re.compile(
    r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*="
)


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)", text)
    return tuple(a or b or c for a, b, c in parts)


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each table and key path to its first line (1-based), for messages only."""
    found: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split_key(header.group(1))
            found.setdefault(table, number)
            continue
        key = _KEYLINE.match(line)
        if key:
            found.setdefault((*table, *_split_key(key.group(1))), number)
    return found
