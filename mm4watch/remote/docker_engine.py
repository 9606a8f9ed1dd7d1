"""The one module that talks to Docker (docker-py), local or remote.

Callers get typed handles (``Engine``, ``Container``, ``Image``), never a
docker-py object: what Docker can do for mm4watch is listed here.

``ssh://`` engines are reached through a socket forwarded by the system ssh
client (``ssh.Tunnel``); ``unix://`` directly; ``tcp://`` only with TLS from a
Docker context, or with ``insecure = true``. Every failure to connect becomes
``ssh.Unreachable`` with a message that says what to do; every refusal of the engine's
API (a Docker error) becomes ``EngineRefused`` with the engine's own explanation. Callers
give typed arguments (``Bind``, CPUs, a memory size), never docker-py types.
"""

from __future__ import annotations

import functools
import gzip
import io
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from ..core import config
from ..core.errors import EXIT_NOTEBOOK_FAILED, ConfigError, Mm4Error
from ..core.fsutil import extract_stream
from .buildctx import BuildContext
from .ssh import Target, Tunnel, Unreachable

LABEL_PROJECT = "mm4watch.project"
LABEL_RUN = "mm4watch.run"
LABEL_CONTEXT = "mm4watch.context"
LABEL_WARM = "mm4watch.warm"

# a registry's passing trouble (a 5xx, a dropped connection: e.g. two pushes of the same new
# layer at once) is pushed through again after these pauses; a refusal (401, 404, a bad name) is not
PUSH_RETRY_S = (1.0, 3.0)
_REGISTRY_HICCUP = re.compile(r"HTTP status: 5\d\d|\b50[0234]\b|connection reset|broken pipe|EOF", re.IGNORECASE)


class BuildFailed(Mm4Error):
    pass


class EngineRefused(Mm4Error):
    """The engine's API said no (a Docker error): its explanation is the message. Inside a run it
    fails the run (``DockerError``); elsewhere it exits 1, like any check that failed."""

    exit_code = EXIT_NOTEBOOK_FAILED


class Settings(Protocol):
    """How to reach an engine (an executor's settings give these)."""

    @property
    def name(self) -> str: ...
    @property
    def host(self) -> str | None: ...
    @property
    def context(self) -> str | None: ...
    @property
    def insecure(self) -> bool: ...
    @property
    def socket(self) -> str | None: ...
    @property
    def ssh_options(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Bind:
    """A folder of the engine's machine mounted into a container, always read-only."""

    source: str
    target: str


F = TypeVar("F", bound=Callable[..., Any])


class EngineLost(Unreachable):
    """The connection to an engine dropped while it was in use (the Mini went away, its engine
    restarted): nothing of docker-py's or requests' leaves this module for it."""


def _said_no(method: F) -> F:
    """Docker's API errors, as ``EngineRefused``; a dropped connection, as ``EngineLost``: no
    docker-py or requests exception leaves this module."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import docker
        import requests

        try:
            return method(*args, **kwargs)
        except docker.errors.DockerException as exc:
            raise EngineRefused(str(getattr(exc, "explanation", None) or exc)) from exc
        except requests.exceptions.RequestException as exc:
            raise EngineLost("the connection to the Docker engine dropped") from exc

    return wrapper  # type: ignore[return-value]


def _translated(cls: type) -> type:
    for attr, value in list(vars(cls).items()):
        if attr.startswith("_") or attr == "open":
            continue
        if isinstance(value, property) and value.fget is not None:
            setattr(cls, attr, property(_said_no(value.fget)))
        elif callable(value):
            setattr(cls, attr, _said_no(value))
    return cls


def _mounts(binds: list[Bind]) -> list[Any]:
    from docker.types import Mount

    return [Mount(target=b.target, source=b.source, type="bind", read_only=True) for b in binds]


def size_bytes(text: str) -> int:
    """ "8g", "512m", "1024" as bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    text = text.strip().lower().rstrip("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


@dataclass(frozen=True)
class Image:
    tag: str
    id: str
    built: bool  # False when an image with this content hash was already there


@_translated
class Container:
    """A container on the engine, by what mm4watch does with it."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    @property
    def name(self) -> str:
        return str(self._raw.name)

    @property
    def short_id(self) -> str:
        return str(self._raw.short_id)

    @property
    def status(self) -> str:
        return str(self._raw.status)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._raw.labels or {})

    def start(self) -> None:
        self._raw.start()

    def stop(self, grace_s: float) -> None:
        self._raw.stop(timeout=int(grace_s))

    def remove(self) -> None:
        self._raw.remove(force=True)

    def put_archive(self, path: str, data: bytes) -> None:
        self._raw.put_archive(path, data)

    def rename(self, name: str) -> None:
        self._raw.rename(name)

    def set_cpu_shares(self, shares: int) -> None:
        self._raw.update(cpu_shares=shares)


@_translated
class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tunnel: Tunnel | None = None
        self.client: Any = None
        self.base_url = ""
        self.tls: Any = None
        self.label = settings.host or f"context {settings.context}"
        self.endpoint = ""  # the engine's address: ssh://..., unix://..., tcp://...
        self.target: Target | None = None  # the engine's machine, when reached over ssh
        self.socket: str = settings.socket or ""  # the engine's socket on its machine (found there when not set)
        self.product = ""  # which Docker that socket is (Docker Desktop, colima, ...), when found there

    # -- connection ---------------------------------------------------------

    def open(self) -> Engine:
        import docker

        host, tls = self._endpoint()
        if host.startswith("ssh://"):
            target = Target.parse(host, self.settings.ssh_options)
            self.label, self.target = target.label, target
            if not self.settings.socket:
                self._find_socket(target)
            self.tunnel = Tunnel(target, self.socket).open()
            base_url = f"unix://{self.tunnel.local}"
        else:
            base_url = host
        self.base_url, self.tls, self.endpoint = base_url, tls, host
        if host.startswith("tcp://") and not tls:
            print(f"mm4watch: warning: {host} without TLS: traffic is unencrypted", file=sys.stderr)
        try:
            self.client = docker.DockerClient(base_url=base_url, version="auto", timeout=120, tls=tls or False)
        except docker.errors.DockerException as exc:
            self.close()
            where = f"{self.socket} on {self.label}" if host.startswith("ssh://") else host
            where += f" ({self.product})" if self.product else ""
            raise Unreachable(
                f"no Docker engine answers at {where} ({_short(exc)}). Is Docker running there? "
                f"`mm4watch doctor {self.settings.name}` checks step by step"
            ) from None
        return self

    def _find_socket(self, target: Target) -> None:
        """The account's engine socket there: its current docker context's, else the first known one."""
        from . import docker_products, ssh

        found = docker_products.discover(ssh.shared(target))
        if found.socket is None:
            raise Unreachable(
                f"no Docker engine socket on {self.label} (looked at {found.looked()}). Start Docker there "
                "(Docker Desktop, OrbStack, colima or Rancher Desktop, logged in as that user), or set "
                f'socket = "/path/to/docker.sock" under [executors.{self.settings.name}]'
            )
        self.socket, self.product = found.socket, found.product

    def _endpoint(self) -> tuple[str, Any]:
        if self.settings.host:
            return self.settings.host, None
        host, tls = read_context(self.settings.context or "")
        if host.startswith("tcp://") and not tls and not self.settings.insecure:
            raise ConfigError(
                f"executor {self.settings.name!r}: context {self.settings.context!r} uses plain TCP without TLS; "
                "use an ssh:// context, add TLS to it, or set insecure = true"
            )
        return host, tls

    def sibling(self) -> Engine:
        """Another client over the same connection, for use from another thread."""
        import docker

        other = Engine(self.settings)
        other.label, other.socket, other.product = self.label, self.socket, self.product
        other.client = docker.DockerClient(
            base_url=self.base_url, version=self.client.api.api_version, timeout=120, tls=self.tls or False
        )
        return other

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None

    def __enter__(self) -> Engine:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        version = self.client.version()
        return {
            "host": self.label,
            "server_version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "os": version.get("Os"),
            "arch": version.get("Arch"),
        }

    # -- images ---------------------------------------------------------------

    def build(
        self,
        ctx: BuildContext,
        name: str,
        dockerfile: str,
        log: IO[str],
        args: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        """Build ``name``'s image of ``ctx`` with the classic builder (docker-py's only one), with build
        ``args`` and more ``labels``; its lines go to ``log``."""
        import docker

        try:
            stream = self.client.api.build(
                # gzip: source code shrinks to about a quarter on the link
                fileobj=io.BytesIO(gzip.compress(ctx.data, 6)),
                encoding="gzip",
                custom_context=True,
                tag=image_tag(name, ctx),
                dockerfile=dockerfile,
                rm=True,
                forcerm=True,
                decode=True,
                pull=False,
                buildargs=args or None,
                labels={**image_labels(name, ctx), **(labels or {})},
            )
            for chunk in stream:
                if "stream" in chunk:
                    log.write(chunk["stream"])
                    log.flush()
                if "error" in chunk:
                    raise BuildFailed(chunk["error"].strip())
        except docker.errors.APIError as exc:
            raise BuildFailed(_short(exc)) from None

    def built(self, tag: str) -> Image:
        """The image a build has just made."""
        import docker

        try:
            return Image(tag, self.client.images.get(tag).id, built=True)
        except docker.errors.ImageNotFound:
            raise BuildFailed(f"the build ended but {tag} is not among {self.label}'s images") from None

    def find_image(self, tag: str) -> Image | None:
        import docker

        try:
            return Image(tag, self.client.images.get(tag).id, built=False)
        except docker.errors.ImageNotFound:
            return None

    def image_exists(self, ref: str) -> bool:
        import docker

        try:
            self.client.images.get(ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    def working_dir(self, tag: str) -> str:
        return self.client.images.get(tag).attrs.get("Config", {}).get("WorkingDir") or "/project"

    def _project_images(self, name: str, *labels: str) -> list[Any]:
        """``name``'s images here (with ``labels`` too, when given), newest first."""
        images = self.client.images.list(filters={"label": [f"{LABEL_PROJECT}={name}", *labels]})
        images.sort(key=lambda img: img.attrs.get("Created", ""), reverse=True)
        return list(images)

    def newest_label(self, name: str, key: str) -> str | None:
        """Label ``key`` of the newest of ``name``'s images here that has it."""
        for image in self._project_images(name, key):
            value = (image.labels or {}).get(key)
            if value is not None:
                return str(value)
        return None

    def gc(self, name: str, keep: int) -> list[str]:
        """Remove this project's images beyond the newest ``keep``; returns removed tags."""
        import docker

        for warm in self.containers({LABEL_PROJECT: name, LABEL_WARM: ""}):
            if warm.name.startswith("mm4-warm-"):  # idle: they would pin old images
                warm.remove()
        images = self._project_images(name)
        removed: list[str] = []
        for image in images[keep:]:
            # by tag: a swarm's image has its registry name too, and an image with two names is
            # removed (unforced) only name by name; its last name takes the image with it
            for ref in image.tags or [image.id]:
                try:
                    self.client.images.remove(ref, force=False)
                    removed.append(ref if image.tags else image.short_id)
                except docker.errors.APIError:
                    break  # still used by a container: kept, tried again next time
        return removed

    def push(self, tag: str, ref: str, log: IO[str]) -> dict[str, int]:
        """Tag ``tag`` as ``ref`` (``registry/name:tag``) and push it; layers by what happened to them."""
        import docker

        self.client.images.get(tag).tag(ref)
        repository, _, version = ref.rpartition(":")
        counts: dict[str, int] = {}
        log.write(f"pushing {ref}\n")
        for attempt, pause in enumerate((*PUSH_RETRY_S, None)):
            counts.clear()
            try:
                for chunk in self.client.api.push(repository, tag=version, stream=True, decode=True):
                    if "error" in chunk:
                        raise BuildFailed(f"push of {ref} failed: {chunk['error'].strip()}")
                    status = str(chunk.get("status", ""))
                    if chunk.get("id") and status in ("Pushed", "Layer already exists", "Mounted from"):
                        counts[status] = counts.get(status, 0) + 1
                        log.write(f"  {chunk['id']}: {status}\n")
                break
            except (BuildFailed, docker.errors.APIError) as exc:
                said = str(exc) if isinstance(exc, BuildFailed) else f"push of {ref} failed: {_short(exc)}"
                if pause is None or not _REGISTRY_HICCUP.search(said):
                    raise BuildFailed(said) from None
                log.write(f"{said}: pushing again in {pause:g} s (attempt {attempt + 2} of {len(PUSH_RETRY_S) + 1})\n")
                log.flush()
                time.sleep(pause)
        log.write(
            f"pushed {ref}: {counts.get('Pushed', 0)} layers sent, {counts.get('Layer already exists', 0)} already there\n"
        )
        log.flush()
        return counts

    def pull(self, ref: str) -> None:
        """Pull ``ref`` onto this engine; a failure says what the engine said."""
        import docker

        try:
            self.client.images.pull(ref)
        except docker.errors.APIError as exc:
            raise Mm4Error(_short(exc)) from None

    def some_image(self) -> str | None:
        """A tag of any image on the engine, smallest first (for probes)."""
        tagged = [i for i in self.client.images.list() if i.tags]
        return str(min(tagged, key=lambda i: i.attrs.get("Size", 0)).tags[0]) if tagged else None

    # -- swarm ------------------------------------------------------------------

    def nodes(self) -> list[dict[str, Any]]:
        """The swarm's nodes as the manager sees them (raw ``docker node inspect``)."""
        return [dict(n.attrs) for n in self.client.nodes.list()]

    def node(self, node_id: str) -> dict[str, Any] | None:
        import docker

        try:
            return dict(self.client.nodes.get(node_id).attrs)
        except docker.errors.NotFound:
            return None

    def create_job(
        self,
        image: str,
        *,
        binds: list[Bind],
        cpus: float | None,
        memory: str | None,
        constraints: list[str],
        environment: dict[str, str],
        **kwargs: Any,
    ) -> str:
        """A one-off job service (``replicated-job``, one completion, never restarted); its id.
        CPUs and memory are reserved and limited alike: Swarm places by what a run may take."""
        import docker
        from docker.types import Resources, RestartPolicy, ServiceMode

        nano = int(cpus * 1e9) if cpus else None
        size = size_bytes(memory) if memory else None
        try:
            service = self.client.services.create(
                image,
                mode=ServiceMode("replicated-job", replicas=1, concurrency=1),
                restart_policy=RestartPolicy(condition="none"),
                mounts=_mounts(binds),
                constraints=constraints,
                env=[f"{k}={v}" for k, v in environment.items()],
                resources=Resources(cpu_limit=nano, mem_limit=size, cpu_reservation=nano, mem_reservation=size),
                **kwargs,
            )
        except docker.errors.APIError as exc:
            # a busy manager retries its own call to the swarm and then finds the service it has
            # just made ("name conflicts with an existing object"): with a name of its own run, it is this one
            name = kwargs.get("name")
            conflict = exc.status_code == 409 and name
            mine = [s for s in self.client.services.list(filters={"name": name}) if s.name == name] if conflict else []
            if not mine:
                raise
            service = mine[0]
        return str(service.id)

    def service_ids(self, labels: dict[str, str]) -> list[str]:
        filters = {"label": [f"{k}={v}" if v else k for k, v in labels.items()]}
        return [str(s.id) for s in self.client.services.list(filters=filters)]

    def tasks(self, service_id: str) -> list[dict[str, Any]]:
        """The service's tasks, newest first (empty once the service is gone)."""
        import docker

        try:
            found = self.client.services.get(service_id).tasks()
        except docker.errors.NotFound:
            return []
        return sorted((dict(t) for t in found), key=lambda t: str(t.get("CreatedAt", "")), reverse=True)

    def remove_service(self, service_id: str) -> None:
        import docker

        try:
            self.client.services.get(service_id).remove()
        except docker.errors.NotFound:
            pass

    # -- containers -----------------------------------------------------------

    def create(
        self, tag: str, *, binds: list[Bind], cpus: float | None, memory: str | None, **kwargs: Any
    ) -> Container:
        return Container(
            self.client.containers.create(
                tag,
                detach=True,
                mounts=_mounts(binds),
                nano_cpus=int(cpus * 1e9) if cpus else None,
                mem_limit=memory,
                **kwargs,
            )
        )

    def container(self, name: str) -> Container | None:
        import docker

        try:
            return Container(self.client.containers.get(name))
        except docker.errors.NotFound:
            return None

    def containers(self, labels: dict[str, str]) -> list[Container]:
        # an empty value matches any value of that label
        filters = {"label": [f"{k}={v}" if v else k for k, v in labels.items()]}
        return [Container(c) for c in self.client.containers.list(all=True, filters=filters)]

    def info(self) -> dict[str, Any]:
        """The engine's own description (CPUs, memory, ...)."""
        return dict(self.client.info())

    def run_probe(self, image: str, command: list[str]) -> str:
        """Run ``command`` in a throwaway container of ``image`` (as uid 1000); its output."""
        out = self.client.containers.run(image, command, remove=True, user="1000:1000")
        return out.decode(errors="replace") if isinstance(out, bytes) else str(out)

    def follow_logs(self, container: Container, sink: IO[bytes], since: float | None = None) -> threading.Thread:
        raw = container._raw

        def pump() -> None:
            try:
                extra = {"since": int(since)} if since else {}
                for chunk in raw.logs(stream=True, follow=True, **extra):
                    sink.write(chunk)
                    sink.flush()
            except Exception:  # the engine went away: the harvest says what happened
                pass

        thread = threading.Thread(target=pump, name="mm4-logs", daemon=True)
        thread.start()
        return thread

    def wait(self, container: Container, timeout: float) -> int | None:
        """The exit code, or None when ``timeout`` passed first (``EngineLost`` when the engine is gone)."""
        import requests

        raw = container._raw
        try:
            return int(raw.wait(timeout=max(1, int(timeout)))["StatusCode"])
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            raw.reload()  # raises when the engine itself is gone
            if raw.status in ("exited", "dead"):
                return int(raw.attrs["State"]["ExitCode"])
            return None

    def state(self, name: str) -> tuple[str, int | None, str] | None:
        """A container's status, exit code and when it finished (Docker's RFC 3339 time), or None."""
        import docker

        try:
            raw = self.client.containers.get(name)
        except docker.errors.NotFound:
            return None
        state = raw.attrs.get("State") or {}
        return raw.status, state.get("ExitCode"), str(state.get("FinishedAt") or "")

    def fetch(
        self, container: Container, path: str, into: Path, skip: frozenset[str] = frozenset(), log: Path | None = None
    ) -> int:
        """Copy ``path`` (a folder or file) out of the container into ``into``.

        The archive is streamed and unpacked as it arrives; members are checked
        (no absolute paths, no '..', no links or devices) and the top folder
        is dropped, so ``/output/a.csv`` lands at ``into/a.csv``. Names in
        ``skip`` (top level) are left out. Returns the bytes received.
        """
        import tarfile

        import docker

        for attempt in range(FETCH_TRIES):
            try:
                chunks, _ = container._raw.get_archive(path, chunk_size=1 << 20)
            except docker.errors.NotFound:
                return 0
            stream = _ChunkReader(chunks)
            try:
                extract_stream(stream, into, skip=skip, strip_top=True, log=log)
                return stream.received
            except tarfile.ReadError as exc:  # the stream was cut short (the link to the engine dropped it)
                if attempt + 1 == FETCH_TRIES:
                    raise Mm4Error(f"copying {path} out of the container was cut short {FETCH_TRIES} times "
                                   f"({exc}); the container is kept: run the fetch again") from None  # fmt: skip
                time.sleep(1 + attempt)
        return 0


FETCH_TRIES = 3  # a container's files copied out again from the start when the archive arrives cut short


def image_tag(name: str, ctx: BuildContext) -> str:
    """A run image's tag: the project's image name and its build context's hash."""
    return f"{name}:ctx-{ctx.digest[:16]}"


def image_labels(name: str, ctx: BuildContext) -> dict[str, str]:
    return {LABEL_PROJECT: name, LABEL_CONTEXT: ctx.digest}


def read_context(name: str) -> tuple[str, Any]:
    """(host, TLSConfig or None) of a docker CLI context, read from its store."""
    import hashlib
    import json

    store = config.docker_config_dir() / "contexts"
    digest = hashlib.sha256(name.encode()).hexdigest()
    try:
        meta = json.loads((store / "meta" / digest / "meta.json").read_text())
        endpoint = meta["Endpoints"]["docker"]
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"no Docker context named {name!r} in {store} (docker context ls)") from None
    host = endpoint.get("Host") or "unix:///var/run/docker.sock"
    tls = None
    certs = store / "tls" / digest / "docker"
    if host.startswith("tcp://") and certs.is_dir():
        from docker.tls import TLSConfig

        ca, cert, key = (certs / "ca.pem", certs / "cert.pem", certs / "key.pem")
        tls = TLSConfig(
            client_cert=(str(cert), str(key)) if cert.exists() and key.exists() else None,
            ca_cert=str(ca) if ca.exists() else None,
            verify=not endpoint.get("SkipTLSVerify", False),
        )
    return host, tls


class _ChunkReader(io.RawIOBase):
    """A file object over docker-py's archive chunks, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = iter(chunks)
        self.buffer = b""
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self.buffer:
            try:
                self.buffer = next(self.chunks)
            except StopIteration:
                return 0
            self.received += len(self.buffer)
        n = min(len(target), len(self.buffer))
        target[:n] = self.buffer[:n]
        self.buffer = self.buffer[n:]
        return n


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:300] if text else type(exc).__name__
