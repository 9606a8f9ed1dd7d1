"""The dask executor (type "dask"): native runs on the Mini that Dask picks, for a pool of Macs.

Swarm cannot join Macs' Docker VMs, and a Mac's containers have no GPU; Dask pools the Macs
themselves. Dask decides where and when, ssh moves the bytes:

1. as a client of the scheduler, each run asks for a lease (``remote.dask_pool``)
   that needs ``resources`` (default ``{mps = 1}``, what each Mini's worker
   announces); capacity, placement, order and liveness are Dask's. The client is
   this machine's agent's (``remote.dask_agent``), asked over a unix socket: a run
   imports no Dask;
2. when the scheduler starts the lease on a worker, the run goes to that worker's
   machine over ssh with the native executor's own steps (code sync, environment,
   runner detached, harvests, results home): a ``NativeExecutor`` for that host,
   not a copy of it;
3. the run's end (or failure, timeout, cancel) lets the lease go: the slot is free.

A worker that dies or leaves mid-run ends it ``NodeLost`` with what came home up to
then; ``retries`` runs it again on another worker. A run whose mm4watch process
died is found again from ``.mm4/dask/<run key>.json`` and takes its slot back (a
lease pinned to that worker); so does a run whose agent died. Dask is an optional
dependency, imported only by the agent (through ``remote.dask_pool``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from ..core import checks
from ..core.config import Config, ConfigProblem, setting
from ..core.errors import Mm4Error
from ..core.fsutil import atomic_write_text
from . import Job, Outcome
from .base import Executor, LostNode, RemoteConfig
from .native import NativeConfig, NativeExecutor, _Remote
from .runlog import log_line
from .upkeep import Checkup

if TYPE_CHECKING:
    from ..remote.dask_agent import AgentLease, AgentPool
    from ..remote.dask_pool import Node, Tls, Worker

REATTACH_PRIORITY = 100  # a re-attached run's lease goes before any run that waits
RELINK_S = 30.0  # a run whose agent stopped asks a new one for its slot at most this often


@dataclass(frozen=True)
class DaskConfig(NativeConfig):
    """``type = "dask"``: native runs placed by a Dask scheduler on the worker with ``resources``.

    A worker's machine is reached over ssh at its address's host (``~/.ssh/config`` gives
    user, port and key) unless ``nodes`` maps its name (``dask worker --name``), hostname
    or address to an ``ssh://`` address. ``concurrency = 0``: one run per worker with the
    resources (Dask holds the rest)."""

    scheduler: str | None = setting(checks.scheduler)
    resources: Mapping[str, float] = setting(checks.resources, factory=lambda: MappingProxyType({"mps": 1.0}))
    nodes: Mapping[str, str] = setting(checks.ssh_map, factory=lambda: MappingProxyType({}))
    retries: int = setting(checks.count, 0)  # a run whose worker is lost runs again on another, this many times
    concurrency: int = setting(checks.count, 0)
    # this machine's certificate for a tls:// scheduler (`mm4watch pool certs` makes them)
    tls_ca: str | None = setting(checks.text)
    tls_cert: str | None = setting(checks.text)
    tls_key: str | None = setting(checks.text)
    insecure: bool = setting(checks.boolean, False)  # a plain tcp:// scheduler: anyone on the LAN may use it
    not_keys = frozenset({"host"})

    def check(self) -> None:
        if not self.scheduler:
            raise ConfigProblem(
                None, 'a dask executor needs scheduler = "tls://machine:8786" (where `dask scheduler` listens)'
            )
        if not self.nodes:
            raise ConfigProblem(
                "nodes",
                'a dask executor needs nodes = { "mac-1" = "ssh://me@10.0.0.11" }: each Mini by its worker\'s '
                "--name (or address) and how ssh reaches it; a worker not listed is never sent a run",
            )
        given = [self.tls_ca, self.tls_cert, self.tls_key]
        if self.scheduler.startswith("tls://") and not all(given):
            raise ConfigProblem(
                "tls_ca" if not self.tls_ca else ("tls_cert" if not self.tls_cert else "tls_key"),
                "a tls:// scheduler needs tls_ca, tls_cert and tls_key (files on this machine; "
                "`mm4watch pool certs FOLDER` makes them)",
            )
        if self.scheduler.startswith("tcp://") and any(given):
            raise ConfigProblem(
                "scheduler",
                "tls_ca, tls_cert and tls_key are set but the scheduler is tcp:// (unencrypted): "
                "write tls:// as the scheduler listens, or leave the three out",
            )
        if self.scheduler.startswith("tcp://") and not self.insecure:
            raise ConfigProblem(
                "scheduler",
                "a tcp:// scheduler lets anyone on the network run code on the pool and on this machine: "
                "start it with TLS (`mm4watch pool certs FOLDER` makes the certificates; README, 'Dask') "
                "and write tls://, or set insecure = true if you really mean it",
            )
        RemoteConfig.check(self)

    def tls(self) -> Tls | None:
        from ..remote.dask_pool import Tls

        if not (self.tls_ca and self.tls_cert and self.tls_key):
            return None
        return Tls(*(str(Path(p).expanduser()) for p in (self.tls_ca, self.tls_cert, self.tls_key)))


@dataclass
class _Slot:
    lease: AgentLease
    node: Node
    native: NativeExecutor  # the native executor for that worker's machine
    state: Path  # where this machine keeps which worker runs it (for a re-attach): gone with the run
    remote: _Remote | None = None
    lost: str = ""  # why the worker was lost mid-run
    relinked_at: float = 0.0  # when the slot was last asked for again (its agent had stopped)


class DaskExecutor(Executor[_Slot]):
    type = "dask"
    config_class = DaskConfig
    died = NativeExecutor.died
    settings: DaskConfig

    def __init__(self, settings: DaskConfig, config: Config) -> None:
        super().__init__(settings, config)
        self._pool: AgentPool | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "scheduler": self.settings.scheduler}

    def pool(self) -> AgentPool:
        """The scheduler, asked through this machine's Dask agent (``remote.dask_agent``)."""
        if self._pool is not None and self._pool.broken:
            self.close()
        if self._pool is None:
            from ..remote.dask_agent import AgentPool

            self._pool = AgentPool(str(self.settings.scheduler), self.settings.tls())
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def check(self) -> None:
        self.pool()  # the scheduler does not answer: PoolUnreachable, exit 75 before any folder

    # -- a worker's machine --------------------------------------------------------

    def target(self, name: str, hostname: str, host: str) -> str:
        """The ssh address of a worker's machine, as ``nodes`` lists it by the worker's name or host
        (the scheduler's word, never what a worker says of itself); a machine not listed is refused."""
        from ..remote.dask_pool import PoolRefused

        found = self._listed_as(name, host)
        if found is None:
            raise PoolRefused(
                f"the worker {name} ({host}) is not on a machine [executors.{self.settings.name}] nodes lists: "
                "no run is sent to it"
            )
        return found

    def native(self, target: str) -> NativeExecutor:
        """The native executor for one worker's machine: the same settings, that host."""
        given = {f.name: getattr(self.settings, f.name) for f in dataclasses.fields(NativeConfig)}
        settings = NativeConfig(**{**given, "type": "native", "host": target, "concurrency": 1})
        return NativeExecutor(settings, self.config)

    def _state(self, job: Job) -> Path:
        return self.config.state_dir / "dask" / f"{job.key}.json"

    def _remember(self, job: Job, slot: _Slot) -> None:
        path = self._state(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"lease": slot.lease.name, "node": slot.node.as_dict()}))

    node_word = "worker"
    helpers: ClassVar[dict[str, str]] = {"dask-agent": "mm4watch.remote.dask_agent:main"}  # one client per scheduler

    def retries_lost(self) -> int:
        return self.settings.retries

    def lost_node(self, outcome: Outcome) -> LostNode | None:
        if (outcome.error or {}).get("ename") != "NodeLost":
            return None
        node = outcome.executor.get("node") or {}
        name = str(node.get("name"))
        return LostNode(name, f"{name} ({node.get('worker')})", str(node.get("worker")))

    def another_for(self, job: Job) -> bool:
        return bool(self._others(job.avoid))

    def fits(self) -> str:
        return f"has {self._wants()}"

    def node_lost(self, handle: _Slot, outcome: Outcome) -> str:
        return handle.lost + "; what came home up to then is kept" if handle.lost else ""

    def _wants(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.settings.resources.items())

    def _others(self, avoid: tuple[str, ...] = ()) -> list[Worker]:
        """The workers a run may go to: listed, with the resources, not one this run lost (``avoid``)."""
        return [w for w in self._listed() if w.covers(self.settings.resources) and w.address not in avoid]

    def _listed(self) -> list[Worker]:
        """The pool's workers on a machine ``nodes`` lists: the only ones a run is sent to."""
        return [w for w in self.pool().workers() if self._listed_as(w.name, w.host) is not None]

    def _listed_as(self, name: str, host: str) -> str | None:
        return next((self.settings.nodes[k] for k in (name, host) if k in self.settings.nodes), None)

    def prepare(self, job: Job, info: dict[str, Any]) -> _Slot:
        from ..remote.dask_pool import lease_name

        pool = self.pool()
        # only a worker on a machine nodes lists (by its name or host, as Dask's workers= takes them)
        workers = [w.address for w in self._others(job.avoid)] if job.avoid else sorted(self.settings.nodes)
        job.phase(f"waiting for a worker with {self._wants()} (Dask)")
        lease = pool.lease(lease_name(self.config.project_key, job.key), self.settings.resources, workers=workers)
        try:
            node = lease.wait()
            target = self.target(node.name, node.hostname, node.host)
            slot = _Slot(lease, node, self.native(target), self._state(job))
            self._remember(job, slot)
            job.place(node.name)
            info.update(node=node.as_dict(), scheduler=self.settings.scheduler, host=slot.native.target.label)
            log_line(
                job,
                f"Dask placed it on {node.name} ({node.worker}); over ssh to {slot.native.target.label}",
            )
            slot.remote = slot.native.prepare(job, info)
        except BaseException:
            lease.let_go()
            self._state(job).unlink(missing_ok=True)
            raise
        return slot

    def start(self, handle: _Slot, job: Job) -> None:
        assert handle.remote is not None
        handle.native.start(handle.remote, job)

    def poll(self, handle: _Slot, job: Job, wait_s: float) -> int | None:
        remote = handle.remote
        assert remote is not None
        from ..remote.dask_pool import PoolUnreachable

        why: str | None = handle.lost
        try:
            why = why or handle.lease.lost()
        except PoolUnreachable as exc:  # the run goes on over there; Dask is asked again next time
            if handle.lease.pool.broken:
                self._relink(handle, job, str(exc))
            else:
                log_line(job, f"{exc}: the run goes on on {handle.node.name}")
        if why:
            handle.lost = why
            log_line(job, f"{why}: stopping the run there if it can be reached")
            self._quietly(job, lambda: handle.native.stop(remote))
            return -1
        return handle.native.poll(remote, job, wait_s)

    def _relink(self, handle: _Slot, job: Job, why: str) -> None:
        """The agent that held the run's lease stopped: its slot asked for again, pinned to its worker
        (granted when the old lease has ended by itself; the run goes on meanwhile)."""
        import time

        if time.monotonic() - handle.relinked_at < RELINK_S:
            return
        handle.relinked_at = time.monotonic()
        try:
            handle.lease, _ = self._pinned(job, handle.node)
        except Mm4Error as exc:
            log_line(
                job, f"{why}; its slot cannot be asked for again yet ({exc}): the run goes on on {handle.node.name}"
            )
            return
        handle.node = handle.lease.node or handle.node  # its worker may have a new address
        self._remember(job, handle)
        log_line(job, f"{why}; the run goes on on {handle.node.name}, its slot asked for again there")

    def _pinned(self, job: Job, node: Node) -> tuple[AgentLease, bool]:
        """A new lease for the run on ``node``'s worker (or a worker that restarted on its machine),
        and whether that worker is in the pool."""
        from ..remote.dask_pool import lease_name

        pool = self.pool()
        workers = pool.workers()
        same = [w for w in workers if w.address == node.worker] or [
            w for w in workers if w.host == node.host and w.covers(self.settings.resources)
        ]
        if same and same[0].address != node.worker:  # the worker restarted there: a new address
            node = dataclasses.replace(node, worker=same[0].address)
        lease = pool.lease(
            lease_name(self.config.project_key, job.key),
            self.settings.resources,
            workers=[w.address for w in same] or [node.worker],
            priority=REATTACH_PRIORITY,
            node=node,
        )
        return lease, bool(same)

    def _quietly(self, job: Job, step: Any) -> None:
        """A step on a lost worker's machine: done if it answers, said in run.log if not."""
        try:
            step()
        except Mm4Error as exc:
            log_line(job, f"{exc} (the worker was lost; what came home is kept)")

    def stop(self, handle: _Slot) -> None:
        if handle.remote is not None:
            handle.native.stop(handle.remote)

    def fetch(self, handle: _Slot, job: Job) -> None:
        remote = handle.remote
        assert remote is not None
        if handle.lost:
            self._quietly(job, lambda: handle.native.fetch(remote, job))
        else:
            handle.native.fetch(remote, job)

    def release(self, handle: _Slot) -> None:
        try:
            if handle.remote is not None:
                handle.native.release(handle.remote)
        except Mm4Error:
            if not handle.lost:
                raise
        finally:
            handle.lease.let_go()
            handle.state.unlink(missing_ok=True)

    def find(self, job: Job, info: dict[str, Any]) -> _Slot | None:
        """The run on the machine its lease had, with a new lease pinned to that worker."""
        from ..remote.dask_pool import Node

        try:
            said = json.loads(self._state(job).read_text())
        except (OSError, ValueError):
            return None
        node = Node.of(said["node"])
        native = self.native(self.target(node.name, node.hostname, node.host))
        remote = native.find(job, info)
        pool = self.pool()
        if remote is None:
            pool.end(said["lease"])
            self._state(job).unlink(missing_ok=True)
            return None
        lease, there = self._pinned(job, node)
        pool.end(said["lease"])  # the dead process's lease lets go at once; this one takes the slot
        node = lease.node or node
        gone = "" if there else f"the worker {node.name} is gone from the pool"
        slot = _Slot(lease, node, native, self._state(job), remote, lost=gone)
        self._remember(job, slot)
        job.place(node.name)
        info.update(node=node.as_dict(), scheduler=self.settings.scheduler, host=native.target.label)
        return slot

    # -- what the commands around a run ask ---------------------------------------------

    def places(self) -> int:
        """Workers on a machine ``nodes`` lists, with the resources."""
        return len(self._others())

    def doctor(self, report: Checkup) -> None:
        """The scheduler, matching versions, each worker with its resources, then each machine as native does."""
        pool: AgentPool | None = None

        def scheduler() -> str:
            nonlocal pool
            pool = self.pool()
            return f"{self.settings.scheduler} answers; dashboard {pool.dashboard or '(none)'}"

        if not report.check(
            "scheduler",
            scheduler,
            "start `dask scheduler` on one machine (`mm4watch doctor` then finds it), open its port in the firewall, "
            "and set scheduler = its address",
        ):
            return
        assert pool is not None
        try:
            problem = pool.dashboard_problem()
            if problem:
                report.warn(
                    "dashboard",
                    f"{problem}: `pip install bokeh` in the scheduler's dask venv, then restart `dask scheduler`",
                )
            self._versions(report, pool)
            workers = pool.workers()
            usable = [w for w in workers if w.covers(self.settings.resources)]
            for w in workers:
                if w in usable:
                    report.ok(f"worker {w.name}", f"{w.address}, resources {dict(w.resources)}, {w.nthreads} thread(s)")
                else:
                    report.warn(
                        f"worker {w.name}", f"{w.address} has {dict(w.resources) or 'no resources'}: no run goes there"
                    )
            if not usable:
                report.fail(
                    "workers",
                    f"no worker of the pool offers {self._wants()}",
                    f"start each Mini's worker with `dask worker {self.settings.scheduler} --nworkers 1 --nthreads 1 "
                    f"--resources {self._wants().replace(', ', ',')}` (README: Setting up a pool)",
                )
            for w in usable:
                target = self.target(w.name, w.name, w.host)
                report.say(f"--    {w.name}: over ssh to {target}")
                self.native(target).doctor(report)
        finally:
            self.close()

    def _versions(self, report: Checkup, pool: AgentPool) -> None:
        found = pool.versions()

        def of(side: Mapping[str, Any]) -> str:
            return str((side.get("packages") or {}).get("distributed"))

        here = of(found.get("client") or {})
        there = {"scheduler": of(found.get("scheduler") or {})}
        there.update({str(a): of(v) for a, v in (found.get("workers") or {}).items()})
        other = {k: v for k, v in there.items() if v != here}
        if other:
            report.fail(
                "dask versions",
                f"distributed {here} here, but " + ", ".join(f"{v} on {k}" for k, v in other.items()),
                f'install the same everywhere: pip install "distributed=={here}" in each Mini\'s dask venv '
                "(or upgrade this machine's to theirs)",
            )
        else:
            report.ok("dask versions", f"distributed {here} here, on the scheduler and on {len(there) - 1} worker(s)")

    def gc(self, keep: int | None) -> list[str]:
        lines = []
        try:
            for w in self._others():
                target = self.target(w.name, w.name, w.host)
                lines += [f"{w.name}: {line}" for line in self.native(target).gc(keep)]
        finally:
            self.close()
        return lines
