"""A Dask scheduler, as the pool's placer: the one module that imports ``distributed``.

Dask decides where and when a run goes; ssh moves the bytes. For each run a
``Lease`` (``dask_lease.hold``) asks for the executor's resources; when the
scheduler starts it on a worker, it says where, and holds the slot until let
go. Capacity, placement, the order of waiting runs and the workers' liveness
are Dask's: this module only asks. Dask's errors leave as ``PoolUnreachable``
(the scheduler does not answer: nothing ran, exit 75) or ``PoolRefused``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from ..core.errors import ConfigError, Mm4Error
from .ssh import Unreachable

MISSING = (
    'the dask executor needs Dask on this machine: pip install "mm4watch[dask]" '
    "(the same dask version as on the Minis: `mm4watch doctor` compares them)"
)
CONNECT_S = 10.0
PREFIX = "mm4-lease"


class PoolUnreachable(Unreachable):
    """The scheduler does not answer; nothing was lost."""


class PoolRefused(Mm4Error):
    """The scheduler answered, but not as asked."""


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(MISSING) from None
    return distributed


@dataclass(frozen=True)
class Worker:
    address: str  # tcp://10.0.0.12:40123
    name: str  # its --name (mac-2), or its address
    host: str  # the address's host part
    resources: Mapping[str, float]
    nthreads: int

    def covers(self, wanted: Mapping[str, float]) -> bool:
        return all(self.resources.get(k, 0) >= v for k, v in wanted.items())


@dataclass(frozen=True)
class Node:
    """Where a lease runs: what the lease said of itself there."""

    worker: str
    name: str
    hostname: str
    python: str
    platform: str
    dask: str

    @classmethod
    def of(cls, said: Mapping[str, Any]) -> Node:
        return cls(**{f.name: str(said.get(f.name, "")) for f in fields(cls)})

    @property
    def host(self) -> str:
        return _host(self.worker)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _lease_source(name: str) -> str:
    """The lease as source text for the worker to run (``exec``, by reference, with a string): no
    code object travels, so the workers' Python need not be this machine's (Dask's pickled
    functions need the same minor version), and the workers need Dask, not mm4watch."""
    import inspect

    from . import dask_lease

    return inspect.getsource(dask_lease) + f"\n\nhold({name!r})\n"


def _host(address: str) -> str:
    where = address.split("://", 1)[-1]
    return where.rsplit(":", 1)[0].strip("[]")


@dataclass(frozen=True)
class Tls:
    """This machine's certificate for a ``tls://`` pool: files here (PEM), signed by the pool's CA."""

    ca: str
    cert: str
    key: str

    def args(self) -> list[str]:
        return ["--tls-ca", self.ca, "--tls-cert", self.cert, "--tls-key", self.key]


class Leasing(Protocol):
    """What a run asks of a lease, held here (``Lease``) or by the agent (``dask_agent.AgentLease``)."""

    node: Node | None

    def placed(self, timeout: float) -> Node | None: ...
    def wait(self, every: float = 1.0) -> Node: ...
    def lost(self) -> str | None: ...
    def let_go(self) -> None: ...


class Scheduling(Protocol):
    """What mm4watch asks of a Dask pool, of a client here (``Pool``) or through this machine's agent
    (``dask_agent.AgentPool``): the two answer the same questions (mypy, and ``tests/test_dask_shape.py``)."""

    address: str

    @property
    def dashboard(self) -> str: ...
    def close(self) -> None: ...
    def dashboard_problem(self) -> str | None: ...
    def workers(self) -> list[Worker]: ...
    def versions(self) -> dict[str, Any]: ...
    def busy(self) -> dict[str, tuple[str, ...]]: ...
    def leases(self) -> dict[str, tuple[str, ...]]: ...
    def lease(
        self, name: str, resources: Mapping[str, float], *, workers: list[str] | None = None, priority: int = 0
    ) -> Leasing: ...
    def end(self, name: str) -> None: ...


QUERIES = ("workers", "versions", "busy", "leases", "dashboard_problem")  # the questions without arguments


class Pool:
    """A client of the scheduler at ``address``: ``tls://`` with ``tls`` (every message encrypted,
    both ends known by the pool's CA), or plain ``tcp://`` (``insecure``, said by the config)."""

    def __init__(self, address: str, timeout: float = CONNECT_S, tls: Tls | None = None) -> None:
        distributed = _distributed()
        self.address = address
        self._d = distributed
        security = None
        if tls is not None:
            from distributed.security import Security

            security = Security(
                tls_ca_file=tls.ca, tls_client_cert=tls.cert, tls_client_key=tls.key, require_encryption=True
            )
        try:
            with warnings.catch_warnings():  # mismatched versions: doctor says it, a run goes on
                warnings.simplefilter("ignore")
                self.client = distributed.Client(
                    address,
                    timeout=timeout,
                    set_as_default=False,
                    name="mm4watch",
                    asynchronous=False,
                    security=security,
                )
        except Exception as exc:  # noqa: BLE001 (refused, reset, timed out, a TLS handshake that fails: no answer)
            from ..core.macos import lan_hint

            raise PoolUnreachable(
                f"the Dask scheduler at {address} does not answer ({type(exc).__name__}: {exc}){lan_hint(str(exc))}; "
                "start it (`dask scheduler`), check its TLS settings (tls://, tls_ca, tls_cert, tls_key) "
                "or fix scheduler = in mm4.toml: `mm4watch doctor` checks it"
            ) from None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.client.close(timeout=5)
        except Exception:  # noqa: BLE001 (a client that cannot close cleanly has nothing left to lose)
            pass

    def _ask(self, what: str, call: Any) -> Any:
        if self.client.status != "running":  # lost the scheduler: asking would wait for its connect timeout
            raise PoolUnreachable(
                f"the Dask scheduler at {self.address} does not answer ({what}: the client is {self.client.status})"
            )
        try:
            return call()
        except (OSError, TimeoutError) as exc:
            raise PoolUnreachable(f"the Dask scheduler at {self.address} does not answer ({what}: {exc})") from None

    @property
    def dashboard(self) -> str:
        return str(self.client.dashboard_link or "")

    def dashboard_problem(self) -> str | None:
        """Why the dashboard's page does not show (None when it does, or when there is none)."""
        import urllib.request

        link = self.dashboard
        if not link:
            return None
        try:
            with urllib.request.urlopen(link, timeout=5) as answer:  # noqa: S310 (the scheduler's own http address)
                page = answer.read(4096).decode(errors="replace")
        except OSError as exc:
            return f"{link} does not answer ({exc})"
        return "the scheduler's machine lacks bokeh" if "needs bokeh" in page else None

    def workers(self) -> list[Worker]:
        info = self._ask("workers", lambda: self.client.scheduler_info(n_workers=-1))
        return [
            Worker(
                address=addr,
                name=str(w.get("name", addr)),
                host=_host(addr),
                resources=dict(w.get("resources") or {}),
                nthreads=int(w.get("nthreads", 0)),
            )
            for addr, w in sorted(info.get("workers", {}).items(), key=lambda kv: str(kv[1].get("name")))
        ]

    def versions(self) -> dict[str, Any]:
        """dask's and Python's version here, on the scheduler and on each worker."""
        return dict(self._ask("versions", lambda: self.client.get_versions(check=False)))

    def busy(self) -> dict[str, tuple[str, ...]]:
        """Each worker's address and the keys it runs (leases among them)."""
        found = self._ask("what runs where", self.client.processing)
        return {addr: tuple(str(k) for k in keys) for addr, keys in found.items()}

    def leases(self) -> dict[str, tuple[str, ...]]:
        """Each worker's leases now (no lease leaks: tests check that this empties)."""
        return {addr: tuple(k for k in keys if k.startswith(PREFIX)) for addr, keys in self.busy().items()}

    def lease(
        self,
        name: str,
        resources: Mapping[str, float],
        *,
        workers: list[str] | None = None,
        priority: int = 0,
    ) -> Lease:
        """Ask for a slot: a lease task that needs ``resources`` (on ``workers`` only, if given)."""
        d = self._d
        holder = d.Semaphore(
            max_leases=1, name=name + ":holder", scheduler_rpc=self.client.scheduler, loop=self.client.loop
        )
        if not self._ask("a lease", lambda: holder.acquire(timeout=CONNECT_S)):
            raise PoolRefused(f"the scheduler at {self.address} did not give {name} its holder's lock")
        future = self._ask(
            "a lease",
            lambda: self.client.submit(
                exec,
                _lease_source(name),
                {"__name__": "mm4watch_lease"},
                key=name,
                pure=False,
                resources=dict(resources),
                workers=workers,
                allow_other_workers=False,
                priority=priority,
                retries=0,
            ),
        )
        return Lease(self, name, future, holder)

    def end(self, name: str) -> None:
        """Let go of a lease another process held (a run re-attached takes its slot again)."""
        self._ask("a lease", lambda: self._d.Event(name + ":go", client=self.client).set())


class Lease:
    def __init__(self, pool: Pool, name: str, future: Any, holder: Any) -> None:
        self.pool, self.name, self.future, self.holder = pool, name, future, holder
        self.node: Node | None = None

    def placed(self, timeout: float) -> Node | None:
        """Where the lease runs, once the scheduler has started it (None: not yet, within ``timeout``)."""
        if self.node is not None:
            return self.node
        if self.future.done():
            raise PoolRefused(f"the lease {self.name} ended before it started: {self._why()}")
        d, client = self.pool._d, self.pool.client
        started = time.monotonic()
        try:
            if not d.Event(self.name + ":placed", client=client).wait(timeout=timeout):
                return None
        except TimeoutError:
            return None
        except OSError as exc:
            raise PoolUnreachable(f"the Dask scheduler at {self.pool.address} does not answer ({exc})") from None
        # where it runs is the scheduler's own word (the worker it gave the task), never a value a
        # worker or another client wrote: those are not read, and nothing from them is unpickled
        self.node = self._where()
        if self.node is None:  # the event says so, the scheduler does not (yet): ask again shortly
            time.sleep(max(0.0, min(0.5, timeout - (time.monotonic() - started))))
        return self.node

    def _where(self) -> Node | None:
        running = [address for address, keys in self.pool.busy().items() if self.name in keys]
        if len(running) != 1:
            return None
        worker = next((w for w in self.pool.workers() if w.address == running[0]), None)
        if worker is None:
            return None
        return Node(worker=worker.address, name=worker.name, hostname=worker.host, python="", platform="", dask="")

    def wait(self, every: float = 1.0) -> Node:
        """Block until the scheduler starts the lease (^C stops the wait: let go then)."""
        while True:
            node = self.placed(every)
            if node is not None:
                return node

    def _why(self) -> str:
        return str(self.future.status)  # its exception is a worker's pickle: never loaded here

    def lost(self) -> str | None:
        """Why the slot is lost (its worker died or left, the lease was run elsewhere), else None."""
        busy = self.pool.busy()
        node = self.node
        if node is None:
            return None
        if node.worker not in busy:
            return f"the worker {node.name} ({node.worker}) left the pool"
        if self.name not in busy[node.worker] and self.future.done():
            return f"the lease on {node.name} ended ({self._why()})"
        return None

    def let_go(self) -> None:
        """The run has ended: its slot is free for the next. Never raises (a gone scheduler frees it anyway)."""
        d, client = self.pool._d, self.pool.client
        steps: tuple[Callable[[], Any], ...] = (
            lambda: self.holder.release(),
            lambda: d.Event(self.name + ":go", client=client).set(),
            lambda: d.Event(self.name + ":placed", client=client).clear(),
            lambda: self.future.release(),
        )
        if not self.future.done() and self.node is None:
            steps = (lambda: self.future.cancel(), *steps)
        for step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001,S112 (each step is best effort: the lease ends by itself otherwise)
                continue


def lease_name(project_key: str, run_key: str) -> str:
    """A new lease's name: the project and run it stands for, and its own part (never reused)."""
    import uuid

    return f"{PREFIX}-{project_key}-{run_key}-{uuid.uuid4().hex[:8]}"
