"""mm4.toml and the environment: the one place on this machine that reads either.

(Copying the whole environment into a child process is not reading it: the
local runner and notification commands inherit it. The runner, on whichever
machine runs the notebook, reads its own ``MM4_WARM_KERNEL`` there.)

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
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..run.runenv import ENV_OUTPUT_DIR, ENV_PROJECT_DIR, ENV_RESULTS_DIR, ENV_RUN_ID, STATE_DIR  # noqa: F401 (what a run is told)
from .durations import parse_duration
from .errors import ConfigError

CONFIG_NAME = "mm4.toml"
DEFAULT_TIMEOUT_S = 2 * 3600.0
EXECUTOR_TYPES = ("local", "docker", "native", "swarm")
TYPE_ALIASES = {"ssh": "native"}  # the native executor's first name (both remote types go over ssh)

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


@dataclass(frozen=True)
class ExecutorConfig:
    """What every executor has; each type has its own dataclass below."""

    name: str
    type: str
    harvest_every_s: float = 60.0  # bring partial results home this often during a run
    concurrency: int = 1  # runs at once on this executor (the daemon)


@dataclass(frozen=True)
class LocalConfig(ExecutorConfig):
    """``type = "local"``: the runner in a child process on this machine."""


@dataclass(frozen=True)
class RemoteConfig(ExecutorConfig):
    """What the two executors that reach the Mini over ssh share."""

    host: str | None = None
    ssh_options: tuple[str, ...] = ()  # extra arguments for the system ssh client
    workdir: str | None = None  # under the remote home: workspaces and the mirror of earlier results
    data: str | None = None  # the mirror of data/ on that machine
    sync_data: bool = False  # rsync data/ to that mirror before each run
    keep_images: int = 3  # images (docker) or environments (native) kept there


@dataclass(frozen=True)
class DockerConfig(RemoteConfig):
    """``type = "docker"``: a container on a Docker engine, built there."""

    context: str | None = None
    insecure: bool = False
    cpus: float | None = None
    memory: str | None = None
    socket: str = "/var/run/docker.sock"  # the engine's socket on the far side of ssh://
    warm: bool = True  # keep a container with a started kernel waiting for the next run


@dataclass(frozen=True)
class NativeConfig(RemoteConfig):
    """``type = "native"`` (also ``"ssh"``): the Mini's own Python, for GPU work."""

    python: str | None = None


@dataclass(frozen=True)
class SwarmConfig(DockerConfig):
    """``type = "swarm"``: each run a one-off job service on a Docker Swarm, placed by Swarm.

    ``host`` reaches a manager as the docker executor reaches its engine; images are
    built there and pushed to ``registry``; nodes are reached over ssh at the address
    Swarm advertises (``~/.ssh/config`` gives user, port and key) unless ``nodes`` maps
    a node's hostname to an ``ssh://`` address. ``concurrency = 0``: one run per ready node."""

    registry: str = ""
    constraints: tuple[str, ...] = ()  # Swarm's own syntax: "node.labels.gpu==mps"
    nodes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    retries: int = 0  # a run whose node is lost runs again on another node, this many times
    warm: bool = False


CONFIG_TYPES: dict[str, type[ExecutorConfig]] = {
    "local": LocalConfig,
    "docker": DockerConfig,
    "native": NativeConfig,
    "swarm": SwarmConfig,
}


@dataclass(frozen=True)
class ProjectConfig:
    notebooks: tuple[str, ...] = ("notebooks",)
    results: str = "results"
    data: str = "data"
    image: str = ""
    dockerfile: str = "Dockerfile"


@dataclass(frozen=True)
class RunConfig:
    executor: str = "local"
    timeout_s: float = DEFAULT_TIMEOUT_S
    kernel: str | None = None
    results_mirror: str = "all"  # earlier results a remote run can see: all, needs, none


@dataclass(frozen=True)
class ResultsConfig:
    metrics: tuple[str, ...] = ("metrics.json",)  # JSON files in a run folder whose numbers go into run.json
    report: bool = True  # the daemon keeps results/index.html current after each run


@dataclass(frozen=True)
class DaemonConfig:
    debounce_s: float = 2.0  # quiet time after the last write before a save counts
    requeue_interrupted: bool = True  # a run cut off by a crash runs again, once
    notify: bool = True  # say when a run ends (Notification Center / notify-send)
    notify_command: str | None = None  # or run this, with MM4_RUN_* in its environment
    restart_running: bool = False  # a newer save cancels the notebook's run in progress
    autostart: bool = False  # the git hook starts the daemon when it is not running


@dataclass(frozen=True)
class Config:
    root: Path
    file: Path | None
    project: ProjectConfig = ProjectConfig()
    run: RunConfig = RunConfig()
    daemon: DaemonConfig = DaemonConfig()
    results: ResultsConfig = ResultsConfig()
    executors: Mapping[str, ExecutorConfig] = field(
        default_factory=lambda: MappingProxyType({"local": LocalConfig("local", "local")})
    )

    @property
    def results_dir(self) -> Path:
        return self.root / self.project.results

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def project_key(self) -> str:
        """This project's one name on other machines and engines (its folder on the Mini, its
        images, its mirror of earlier results, its login service): the folder's name and a hash of
        its path, so two projects with the same folder name never share (nor clean up) anything."""
        import hashlib

        return f"{_slug(self.root.name)}-{hashlib.sha256(str(self.root).encode()).hexdigest()[:8]}"

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


def _mirror_mode(value: Any) -> str:
    if value not in ("all", "needs", "none"):
        raise ValueError(f'is {value!r}; use "all", "needs" or "none"')
    return str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-.") or "project"


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
        raise ConfigError(f"{file}: cannot read it: {exc}") from None
    return parse(text, root=root, file=file)


def parse(text: str, *, root: Path, file: Path | None = None) -> Config:
    """Validate the text of an mm4.toml (pure: no file access)."""
    label = str(file) if file else CONFIG_NAME
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: not valid TOML: {exc}") from None
    v = _Validator(label, text)
    v.only_keys(data, (), {"project", "run", "daemon", "results", "executors"})

    project_t = v.table(data, ("project",))
    notebooks = v.get(project_t, ("project", "notebooks"), _str_or_list, ["notebooks"])
    project = ProjectConfig(
        notebooks=tuple(notebooks),
        results=v.get(project_t, ("project", "results"), _rel_path, "results"),
        data=v.get(project_t, ("project", "data"), _rel_path, "data"),
        image=v.get(project_t, ("project", "image"), _image_name, ""),
        dockerfile=v.get(project_t, ("project", "dockerfile"), _rel_path, "Dockerfile"),
    )
    v.only_keys(project_t, ("project",), {"notebooks", "results", "data", "image", "dockerfile"})

    run_t = v.table(data, ("run",))
    run = RunConfig(
        executor=v.get(run_t, ("run", "executor"), _name, "local"),
        timeout_s=v.get(run_t, ("run", "timeout"), parse_duration, DEFAULT_TIMEOUT_S),
        kernel=v.get(run_t, ("run", "kernel"), _str, None),
        results_mirror=v.get(run_t, ("run", "results_mirror"), _mirror_mode, "all"),
    )
    v.only_keys(run_t, ("run",), {"executor", "timeout", "kernel", "results_mirror"})

    daemon_t = v.table(data, ("daemon",))
    daemon = DaemonConfig(
        debounce_s=v.get(daemon_t, ("daemon", "debounce"), parse_duration, 2.0),
        requeue_interrupted=v.get(daemon_t, ("daemon", "requeue_interrupted"), _bool, True),
        notify=v.get(daemon_t, ("daemon", "notify"), _bool, True),
        notify_command=v.get(daemon_t, ("daemon", "notify_command"), _str, None),
        restart_running=v.get(daemon_t, ("daemon", "restart_running"), _bool, False),
        autostart=v.get(daemon_t, ("daemon", "autostart"), _bool, False),
    )
    v.only_keys(
        daemon_t,
        ("daemon",),
        {"debounce", "requeue_interrupted", "notify", "notify_command", "restart_running", "autostart"},
    )

    results_t = v.table(data, ("results",))
    results = ResultsConfig(
        metrics=tuple(v.get(results_t, ("results", "metrics"), _patterns, ["metrics.json"])),
        report=v.get(results_t, ("results", "report"), _bool, True),
    )
    v.only_keys(results_t, ("results",), {"metrics", "report"})

    executors: dict[str, ExecutorConfig] = {"local": LocalConfig("local", "local")}
    for name, table in v.table(data, ("executors",)).items():
        path = ("executors", name)
        if not isinstance(table, dict):
            v.fail(path, f'must be a table: write [executors.{name}] with type = "local", "docker" or "native"')
        if not _NAME.fullmatch(name):
            v.fail(path, "is not a valid executor name (letters, digits, '-' and '_')")
        executors[name] = _executor(v, name, table)
    if run.executor not in executors:
        v.fail(
            ("run", "executor"),
            f"names executor {run.executor!r}, which is not defined; defined: {', '.join(sorted(executors))}",
        )
    return Config(
        root=root,
        file=file,
        project=project,
        run=run,
        daemon=daemon,
        results=results,
        executors=MappingProxyType(executors),
    )


_EXECUTOR_KEYS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "local": {"concurrency": lambda v: _positive_int(v)},
    "docker": {
        "host": lambda v: _host(v),
        "workdir": lambda v: _str(v),
        "context": lambda v: _str(v),
        "insecure": lambda v: _bool(v),
        "cpus": lambda v: _positive_number(v),
        "memory": lambda v: _memory(v),
        "data": lambda v: _abs_path(v),
        "sync_data": lambda v: _bool(v),
        "keep_images": lambda v: _positive_int(v),
        "ssh_options": lambda v: _str_tuple(v),
        "socket": lambda v: _abs_path(v),
        "harvest_every": lambda v: parse_duration(v),
        "warm": lambda v: _bool(v),
        "concurrency": lambda v: _positive_int(v),
    },
    "swarm": {
        "host": lambda v: _host(v),
        "registry": lambda v: _registry(v),
        "constraints": lambda v: _str_tuple(v),
        "nodes": lambda v: _node_map(v),
        "retries": lambda v: _count(v),
        "ssh_options": lambda v: _str_tuple(v),
        "socket": lambda v: _abs_path(v),
        "cpus": lambda v: _positive_number(v),
        "memory": lambda v: _memory(v),
        "data": lambda v: _abs_path(v),
        "keep_images": lambda v: _positive_int(v),
        "workdir": lambda v: _str(v),
        "harvest_every": lambda v: parse_duration(v),
        "concurrency": lambda v: _count(v),
    },
    "native": {
        "host": lambda v: _host(v),
        "python": lambda v: _str(v),
        "workdir": lambda v: _str(v),
        "data": lambda v: _abs_path(v),
        "sync_data": lambda v: _bool(v),
        "keep_images": lambda v: _positive_int(v),
        "ssh_options": lambda v: _str_tuple(v),
        "harvest_every": lambda v: parse_duration(v),
        "concurrency": lambda v: _positive_int(v),
    },
}


def _executor(v: _Validator, name: str, table: dict[str, Any]) -> ExecutorConfig:
    path = ("executors", name)
    kind = v.get(table, (*path, "type"), _str, None)
    if kind is None:
        v.fail(path, 'needs a type: type = "local", "docker", "native" or "swarm"')
    kind = TYPE_ALIASES.get(kind, kind)
    if kind not in EXECUTOR_TYPES:
        v.fail((*path, "type"), f'is {kind!r}; use "local", "docker", "native" or "swarm"')
    allowed = _EXECUTOR_KEYS[kind]
    v.only_keys(table, path, {"type", *allowed})
    values = {key: v.get(table, (*path, key), check, None) for key, check in allowed.items()}
    values = {k: val for k, val in values.items() if val is not None}
    if "harvest_every" in values:
        values["harvest_every_s"] = values.pop("harvest_every")
    if kind == "swarm":
        if not str(values.get("host", "")).startswith("ssh://"):
            v.fail(path, 'needs host = "ssh://user@manager": a swarm executor reaches a manager of the swarm over ssh')
        if not values.get("registry"):
            v.fail(path, 'needs registry = "host:port": where a swarm executor pushes run images and nodes pull them')
        values.setdefault("concurrency", 0)
    if kind in ("docker", "native") and not (values.get("host") or values.get("context")):
        v.fail(path, f'a {kind} executor needs host = "ssh://user@machine" (or context = "name")')
    if kind == "docker" and "host" in values:
        host = values["host"]
        scheme = host.split("://", 1)[0] if "://" in host else ""
        if scheme not in ("ssh", "unix", "tcp"):
            v.fail((*path, "host"), f"is {host!r}; write ssh://user@machine[:port], unix:///path or tcp://machine:2376")
        if scheme == "tcp" and not values.get("insecure"):
            v.fail(
                (*path, "host"),
                f"is {host!r}: plain TCP sends everything unencrypted and gives root on that machine to anyone "
                'on the network. Use ssh://user@machine, a Docker context with TLS (context = "name"), '
                "or set insecure = true if you really mean it",
            )
    if values.get("sync_data") and not values.get("data"):
        v.fail((*path, "sync_data"), 'needs data = "/path/on/that/machine" to sync into')
    return CONFIG_TYPES[kind](name=name, type=kind, **values)


# ---------------------------------------------------------------------------
# value checks: each returns the value or raises ValueError(reason)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__} {value!r}")
    return value


def _host(value: Any) -> str:
    text = _str(value)
    where = text.split("://", 1)[1] if "://" in text else text
    if text.startswith("-") or where.startswith("-"):
        raise ValueError(f"is {text!r}: a host never begins with '-' (ssh would read it as an option)")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(f"is {text!r}: a host has no spaces or control characters")
    return text


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


def _name(value: Any) -> str:
    text = _str(value)
    if not _NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a valid name (letters, digits, '-' and '_')")
    return text


def _rel_path(value: Any) -> str:
    text = _str(value)
    if not text or Path(text).is_absolute() or ".." in Path(text).parts:
        raise ValueError(f"{text!r} must be a folder inside the project (a relative path, no '..')")
    return text


def _str_or_list(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError("must be a folder name or a list of folder names")
    return [_rel_path(item) for item in items]


def _patterns(value: Any) -> list[str]:
    items = _str_or_list(value)
    for item in items:
        if not item or item.startswith("/") or ".." in Path(item).parts:
            raise ValueError(f'{item!r}: give a pattern inside the run folder, e.g. "eval/*.json"')
    return items


def _registry(value: Any) -> str:
    text = _str(value)
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]+)?", text):
        raise ValueError(f'{text!r} is not a registry address; write host:port, e.g. "mini1.local:5000"')
    return text


def _node_map(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) and v.startswith("ssh://") for v in value.values()):
        raise ValueError('must map node IDs or hostnames to ssh addresses: { "mini2" = "ssh://me@10.0.0.12" }')
    return MappingProxyType(dict(value))


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be a whole number, 0 or more (0: one run per ready node), not {value!r}")
    return value


def _image_name(value: Any) -> str:
    text = _str(value)
    if text and not re.fullmatch(r"[a-z0-9][a-z0-9._/-]*", text):
        raise ValueError(f"{text!r} is not a valid image name (lower case, digits, . _ / -)")
    return text


def _abs_path(value: Any) -> str:
    text = _str(value)
    if not text.startswith("/"):
        raise ValueError(f"{text!r} must be an absolute path on that machine")
    return text


def _str_tuple(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError('must be a list of strings, e.g. ["-i", "~/.ssh/mini"]')
    return tuple(value)


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"must be a number above zero, not {value!r}")
    return float(value)


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"must be a whole number above zero, not {value!r}")
    return value


def _memory(value: Any) -> str:
    text = _str(value)
    if not re.fullmatch(r"\d+(\.\d+)?[bkmg]?", text.lower()):
        raise ValueError(f'{text!r} is not a memory size; write e.g. "8g" or "512m"')
    return text


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

    def fail(self, path: tuple[str, ...], reason: str) -> None:
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
