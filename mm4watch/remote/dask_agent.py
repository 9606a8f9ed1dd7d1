"""One Dask client per scheduler on this machine, kept by a small process of its own.

A run asks this agent for its lease over a unix socket instead of importing
``distributed`` and connecting itself: the import alone is half a second of this
machine's CPU per run (paid twice at once when two runs start together), and the
scheduler would see a new client come and go for every run. As ssh's
ControlPersist keeps a connection, the first mm4watch process that needs the
scheduler starts the agent (``mm4watch _helper dask dask-agent ADDRESS``, the helper the dask executor registers, under a lock this
machine's mm4watch processes share); later ones connect to it.

Each connection is served in a thread of the agent. A lease belongs to the
connection that asked for it and is let go when that connection closes, however
its process ended (killed, crashed, ^C). The agent ends when nobody has been
connected for ``IDLE_S``, or when its client has lost the scheduler; a killed
agent's leases end by themselves (``dask_lease``) and its runs take their slot
again (``executors.dask``).

``AgentPool`` is what a run holds: ``dask_pool.Pool``'s questions, asked of the
agent. This module imports ``distributed`` only in the agent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import fsutil, proc
from ..core.errors import ConfigError, Mm4Error
from .dask_pool import CONNECT_S, MISSING, QUERIES, Node, PoolRefused, PoolUnreachable, Tls, Worker

PROTOCOL = 1  # in the socket's name: an agent of another mm4watch version is not asked
IDLE_S = 300.0  # an agent nobody is connected to ends after this
START_S = CONNECT_S + 30  # an agent's start: Python, distributed, the scheduler's answer
ANSWER_S = 60.0  # a question the agent does not answer in this (plus its own wait): it is gone
_ERRORS: dict[str, type[Mm4Error]] = {"unreachable": PoolUnreachable, "config": ConfigError, "refused": PoolRefused}


def installed() -> bool:
    """Whether this machine has Dask, without importing it (the agent imports it)."""
    import importlib.util

    if "distributed" in sys.modules:
        return sys.modules["distributed"] is not None
    return importlib.util.find_spec("distributed") is not None


def _key(address: str, tls: Tls | None) -> str:
    """One agent per scheduler and certificate."""
    return address if tls is None else "\0".join((address, tls.ca, tls.cert, tls.key))


def socket_path(address: str, tls: Tls | None = None) -> Path:
    return fsutil.host_file(f"dask-agent{PROTOCOL}", _key(address, tls), ".sock")


def log_path(address: str, tls: Tls | None = None) -> Path:
    return fsutil.host_file(f"dask-agent{PROTOCOL}", _key(address, tls), ".log")


# -- what a run holds ----------------------------------------------------------------


class AgentPool:
    """The scheduler at ``address``, asked through this machine's agent for it (started if need be)."""

    def __init__(self, address: str, tls: Tls | None = None) -> None:
        if not installed():
            raise ConfigError(MISSING)
        self.address, self.tls = address, tls
        self.broken = False  # the agent stopped answering: its leases are gone
        self._lock = threading.Lock()
        self._sock, self.agent_pid = _connect(address, tls)
        self._reader = self._sock.makefile("rb")
        self._dashboard: str | None = None

    def __enter__(self) -> AgentPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Gone from the agent: a lease not let go is let go now."""
        with contextlib.suppress(OSError):
            self._reader.close()
            self._sock.close()

    def call(self, op: str, wait_s: float = 0.0, **args: Any) -> Any:
        with self._lock:
            if self.broken:
                raise PoolUnreachable(
                    f"the Dask agent for {self.address} has stopped (see {log_path(self.address, self.tls)})"
                )
            try:
                self._sock.settimeout(ANSWER_S + wait_s)
                self._sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
                line = self._reader.readline()
            except OSError:
                line = b""
            if not line:
                self.broken = True
                raise PoolUnreachable(
                    f"the Dask agent for {self.address} has stopped (see {log_path(self.address, self.tls)})"
                )
        answer = json.loads(line)
        if "error" in answer:
            raise _ERRORS.get(answer["error"], PoolRefused)(answer["message"])
        return answer["ok"]

    @property
    def dashboard(self) -> str:
        if self._dashboard is None:
            self._dashboard = str(self.call("dashboard"))
        return self._dashboard

    def dashboard_problem(self) -> str | None:
        problem = self.call("dashboard_problem")
        return str(problem) if problem is not None else None

    def workers(self) -> list[Worker]:
        return [Worker(**w) for w in self.call("workers")]

    def versions(self) -> dict[str, Any]:
        return dict(self.call("versions"))

    def busy(self) -> dict[str, tuple[str, ...]]:
        return {a: tuple(k) for a, k in self.call("busy").items()}

    def leases(self) -> dict[str, tuple[str, ...]]:
        return {a: tuple(k) for a, k in self.call("leases").items()}

    def lease(
        self,
        name: str,
        resources: Mapping[str, float],
        *,
        workers: list[str] | None = None,
        priority: int = 0,
        node: Node | None = None,
    ) -> AgentLease:
        """A lease held by this connection (``node``: where it is known to run already, a re-attached run's)."""
        said = node.as_dict() if node is not None else None
        self.call("lease", name=name, resources=dict(resources), workers=workers, priority=priority, node=said)
        lease = AgentLease(self, name)
        lease.node = node
        return lease

    def end(self, name: str) -> None:
        """Let go of a lease another process held."""
        self.call("end", name=name)


class AgentLease:
    """``dask_pool.Lease``'s questions, asked of the agent that holds it."""

    def __init__(self, pool: AgentPool, name: str) -> None:
        self.pool, self.name = pool, name
        self.node: Node | None = None

    def placed(self, timeout: float) -> Node | None:
        if self.node is None:
            said = self.pool.call("placed", wait_s=timeout, name=self.name, timeout=timeout)
            self.node = Node.of(said) if said else None
        return self.node

    def wait(self, every: float = 1.0) -> Node:
        while True:
            node = self.placed(every)
            if node is not None:
                return node

    def lost(self) -> str | None:
        why = self.pool.call("lost", name=self.name)
        return str(why) if why is not None else None

    def let_go(self) -> None:
        """Never raises: a gone agent's leases end by themselves."""
        with contextlib.suppress(Mm4Error):
            self.pool.call("let_go", name=self.name)


def _try(path: Path) -> tuple[socket.socket, int] | None:
    """A connection to the agent at ``path`` that answers, and its pid; else None."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(ANSWER_S)
        sock.connect(str(path))
        if fsutil.peer_uid(sock) != os.getuid():  # an agent of another user's: never asked
            sock.close()
            return None
        sock.sendall(json.dumps({"op": "hello", "protocol": PROTOCOL}).encode() + b"\n")
        with sock.makefile("rb") as reader:
            line = reader.readline()
        if line:
            return sock, int(json.loads(line)["ok"]["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    sock.close()
    return None


def _connect(address: str, tls: Tls | None) -> tuple[socket.socket, int]:
    path = socket_path(address, tls)
    found = _try(path)
    if found is not None:
        return found
    with _held(fsutil.host_lock(f"dask-agent{PROTOCOL}", _key(address, tls))):
        found = _try(path)  # another process started it meanwhile
        if found is not None:
            return found
        log = log_path(address, tls)
        argv = proc.helper("dask", "dask-agent", address, *(tls.args() if tls else []))
        with open(log, "wb") as out:  # in this user's own folder: it holds no project's folder (or volume) open
            child = proc.detach(argv, cwd=log.parent, stdout=out)
        deadline = time.monotonic() + START_S
        while True:
            found = _try(path)
            if found is not None:
                return found
            code = child.poll()
            if code is not None:
                raise _failed(address, code, log)
            if time.monotonic() > deadline:
                child.kill()
                raise PoolUnreachable(f"the Dask agent for {address} did not start within {START_S:g}s (see {log})")
            time.sleep(0.02)


def _failed(address: str, code: int, log: Path) -> Mm4Error:
    """The agent ended before it served: what it said, as the error it was."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("mm4watch: error: ")]  # what it said, before any noise
    said = (errors or lines or [""])[-1].removeprefix("mm4watch: error: ")
    if code == PoolUnreachable.exit_code and said:
        return PoolUnreachable(said)
    if code == ConfigError.exit_code and said:
        return ConfigError(said)
    return PoolRefused(f"the Dask agent for {address} ended as it started (exit {code}): {said or 'see ' + str(log)}")


@contextlib.contextmanager
def _held(lock: Path) -> Iterator[None]:
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# -- the agent ------------------------------------------------------------------------


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, pool: Any) -> None:
        self.pool = pool
        self.connected = 0
        self.quiet_since = time.monotonic()
        self.held: list[dict[str, Any]] = []  # each connection's leases
        self.guard = threading.Lock()
        old = os.umask(0o077)  # the socket is this user's only
        try:
            super().__init__(str(path), _Connection)
        finally:
            os.umask(old)
        self.inode = os.stat(path).st_ino

    def answer(self, held: dict[str, Any], line: bytes) -> bytes:
        try:
            request = json.loads(line)
            answer: dict[str, Any] = {"ok": self._do(held, request.pop("op"), request)}
        except PoolUnreachable as exc:
            answer = {"error": "unreachable", "message": str(exc)}
        except ConfigError as exc:
            answer = {"error": "config", "message": str(exc)}
        except Mm4Error as exc:
            answer = {"error": "refused", "message": str(exc)}
        except Exception as exc:  # noqa: BLE001 (said to the asker, who fails its run with it; the agent goes on)
            answer = {"error": "refused", "message": f"the Dask agent failed: {type(exc).__name__}: {exc}"}
        return json.dumps(answer).encode() + b"\n"

    def _do(self, held: dict[str, Any], op: str, a: dict[str, Any]) -> Any:
        pool = self.pool
        if op == "hello":
            return {"pid": os.getpid(), "protocol": PROTOCOL}
        if op == "workers":
            return [asdict(w) for w in pool.workers()]
        if op in QUERIES:  # a fixed list: nothing else of the pool is reached by name
            return getattr(pool, op)()
        if op == "dashboard":
            return pool.dashboard
        if op == "lease":
            lease = pool.lease(a["name"], a["resources"], workers=a["workers"], priority=a["priority"])
            lease.node = Node.of(a["node"]) if a["node"] else None
            held[a["name"]] = lease
            return None
        if op == "placed":
            node = held[a["name"]].placed(float(a["timeout"]))
            return node.as_dict() if node is not None else None
        if op == "lost":
            return held[a["name"]].lost()
        if op == "let_go":
            if a["name"] in held:
                held.pop(a["name"]).let_go()
            return None
        if op == "end":
            return pool.end(a["name"])
        raise PoolRefused(f"the Dask agent does not know {op!r}")


class _Connection(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        held: dict[str, Any] = {}
        with self.server.guard:
            self.server.connected += 1
            self.server.held.append(held)
        try:
            for line in self.rfile:
                self.wfile.write(self.server.answer(held, line))
        except OSError:
            pass
        finally:
            for lease in list(held.values()):  # its process is gone or done: its slots are free
                lease.let_go()
            with self.server.guard:
                self.server.held.remove(held)
                self.server.connected -= 1
                self.server.quiet_since = time.monotonic()


def serve(address: str, idle_s: float = IDLE_S, tls: Tls | None = None) -> int:
    """The agent for ``address``: serve until idle or the scheduler is lost, then let every lease go."""
    from .dask_pool import Pool

    path = socket_path(address, tls)
    pool = Pool(address, tls=tls)  # does not answer: PoolUnreachable (exit 75), said in the log for the starter
    path.unlink(missing_ok=True)  # a dead agent's (the starter holds the lock)
    server = _Server(path, pool)
    print(f"mm4watch: Dask agent {os.getpid()} for {address} at {path}", flush=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    why = "stopped"
    try:
        while True:
            time.sleep(0.5)
            if pool.client.status not in ("running", "connecting"):
                why = f"its client lost the scheduler ({pool.client.status})"
                break
            with server.guard:
                if not server.connected and time.monotonic() - server.quiet_since > idle_s:
                    why = f"nobody connected for {idle_s:g}s"
                    break
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == server.inode:  # not a newer agent's
                path.unlink()
        server.shutdown()
        server.server_close()
        with server.guard:
            leases = [lease for held in server.held for lease in held.values()]
        for lease in leases:
            lease.let_go()
        pool.close()
        print(f"mm4watch: Dask agent {os.getpid()} ended: {why}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    """The helper's command line: ADDRESS [--idle S] [--tls-ca F --tls-cert F --tls-key F]. Started by
    the first mm4watch process that needs the scheduler; it ends by itself when nobody has used it
    for a while. Exit 75: the scheduler did not answer (said on stderr, the agent's log)."""
    import argparse

    parser = argparse.ArgumentParser(prog="mm4watch _helper dask dask-agent")
    parser.add_argument("address")
    parser.add_argument("--idle", type=float, default=None, help="end after this many seconds with nobody connected")
    for name in ("ca", "cert", "key"):
        parser.add_argument(f"--tls-{name}", metavar="FILE", help=f"this machine's TLS {name} for a tls:// scheduler")
    args = parser.parse_args(argv)
    tls = Tls(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca and args.tls_cert and args.tls_key else None
    return serve(args.address, IDLE_S if args.idle is None else args.idle, tls)


if TYPE_CHECKING:  # the agent's pool and lease answer what a client's do (mypy holds them to it)
    from .dask_pool import Leasing, Pool, Scheduling

    def _alike(agent: AgentPool, client: Pool, lease: AgentLease) -> tuple[Scheduling, Scheduling, Leasing]:
        return agent, client, lease
