"""The Swarm executor: each run a one-off job service on a pool of Docker engines.

1. On the manager (reached over ssh:// as the docker executor reaches its engine),
   build the run image (the manager's own architecture), tag it by context hash and
   push it to ``registry``; nodes pull only the layers they lack.
2. Create a ``replicated-job`` service: one completion, never restarted, uid 1000,
   every capability dropped, labels with project and run, cpu/memory reservations
   and limits from the config, constraints from the config, the tag and the build's
   architecture. Its task waits for its job; Swarm places it.
3. Find the task's node and reach that node's engine over ssh at the address Swarm
   advertises (or ``nodes`` in the config); put mm4watch's runner and the job into
   the task's container there (no shared file system), which starts it.
4. From then on the run is the docker executor's: logs into run.log, periodic
   harvests of /output, stop on timeout or cancel, results home, also after a
   failure. A node that goes down or leaves ends the run ``NodeLost``.
5. The service is removed afterwards, and the task's container on its node (Swarm keeps
   an ended task's container after its service is gone).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import IO, Any, ClassVar

from ..core import checks
from ..core.config import ConfigProblem, setting
from ..core.errors import Mm4Error
from ..remote import ssh
from ..remote.docker_engine import LABEL_PROJECT, LABEL_RUN, Container, Engine, Image
from ..results.records import RESERVED_NAMES
from . import Job, Outcome, swarm_nodes
from .base import STOP_GRACE_S, LostNode
from .container import JOB, OUTPUT, job_tar, lib_tar, notebook_dir, run_as
from .docker import DockerConfig
from .engine import EngineExecutor
from .far_side import RUNNER
from .runlog import log_line
from .upkeep import Checkup


@dataclass(frozen=True)
class SwarmConfig(DockerConfig):
    """``type = "swarm"``: each run a one-off job service on a Docker Swarm, placed by Swarm.

    ``host`` reaches a manager as the docker executor reaches its engine; images are
    built there and pushed to ``registry``; nodes are reached over ssh at the address
    Swarm advertises (``~/.ssh/config`` gives user, port and key) unless ``nodes`` maps
    a node's hostname to an ``ssh://`` address. ``concurrency = 0``: one run per ready node."""

    concurrency: int = setting(checks.count, 0)
    registry: str = setting(checks.registry, "")
    constraints: tuple[str, ...] = setting(checks.text_list, ())  # Swarm's own syntax: "node.labels.gpu==mps"
    nodes: Mapping[str, str] = setting(checks.ssh_map, factory=lambda: MappingProxyType({}))
    retries: int = setting(checks.count, 0)  # a run whose node is lost runs again on another node, this many times
    warm: bool = False
    not_keys = frozenset({"context", "insecure", "sync_data", "warm"})

    def check(self) -> None:
        if not str(self.host or "").startswith("ssh://"):
            raise ConfigProblem(
                None, 'needs host = "ssh://user@manager": a swarm executor reaches a manager of the swarm over ssh'
            )
        if not self.registry:
            raise ConfigProblem(
                None, 'needs registry = "host:port": where a swarm executor pushes run images and nodes pull them'
            )
        super().check()


class SwarmRefused(Mm4Error):
    """Swarm could not place or start the run's task (a failed run that says why)."""


PLACE_TIMEOUT_S = 600.0  # a task Swarm cannot place for this long (no capacity) fails the run
LOST_STATES = frozenset({"down", "disconnected", "unknown"})
# The task's command: no new privileges for anything it starts (Swarm has no such service
# option on Engine 20.10), then wait for the job (mm4watch puts it in), then the runner.
WAIT_FOR_JOB = f"""
import ctypes, os, sys, time
ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
deadline = time.monotonic() + 3600
while not os.path.exists("{JOB}/go"):
    if time.monotonic() > deadline:
        sys.exit("no job arrived within an hour")
    time.sleep(0.05)
os.execvp("python3", ["python3", "-m", "{RUNNER}", "{JOB}/spec.json"])
"""


@dataclass
class _Task:
    manager: Engine
    service_id: str
    node_id: str = ""
    node: dict[str, Any] = dataclasses.field(default_factory=dict)
    engine: Engine | None = None  # the node's own engine
    container: Container | None = None
    since: float | None = None
    log: IO[bytes] | None = None
    pump: Any = None
    lost: str = ""  # why the run's node is gone, once it is
    root: str = "/project"  # the project's folder in the image
    pins: list[tuple[ssh.Target, str, str]] = dataclasses.field(default_factory=list)  # earlier results, per node


class SwarmExecutor(EngineExecutor[_Task]):
    type = "swarm"
    config_class = SwarmConfig
    settings: SwarmConfig
    died = "the task's container ended without a result"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "host": self.settings.host, "registry": self.settings.registry}

    refuser = "the swarm"
    tag_options: ClassVar[dict[str, str]] = {
        "constraint": "Swarm placement constraints, several with commas (constraint=node.labels.gpu==mps)"
    }
    node_word = "node"

    def retries_lost(self) -> int:
        return self.settings.retries

    def lost_node(self, outcome: Outcome) -> LostNode | None:
        node = outcome.executor.get("node", {})
        if (outcome.error or {}).get("ename") != "NodeLost" or not node.get("id"):
            return None
        # kept off by node ID: hostnames can repeat (every Docker Desktop is "docker-desktop")
        return LostNode(str(node.get("hostname")), f"{node.get('hostname')} ({str(node['id'])[:12]})", str(node["id"]))

    def node_lost(self, handle: _Task, outcome: Outcome) -> str:
        if handle.lost and outcome.status == "failed" and (outcome.error or {}).get("ename") == "ProcessDied":
            return handle.lost + "; what it wrote up to the last harvest is kept"
        return ""

    # -- the transport -------------------------------------------------------------

    def _prepare(self, manager: Engine, job: Job, info: dict[str, Any]) -> _Task | Outcome:  # on the manager
        arch = str(manager.info().get("Architecture") or "")

        def push(image: Image, log: IO[str]) -> None:
            job.phase(f"pushing to {self.settings.registry}")
            manager.push(image.tag, self._ref(image), log)
            log.write(_arch_line(arch, manager.nodes()) + "\n")

        image = self._build(manager, job, info, then=push)
        if isinstance(image, Outcome):
            return image
        ref = self._ref(image)
        info.update(image=ref, image_id=image.id, image_built=image.built, arch=arch)
        root = manager.working_dir(image.tag).rstrip("/") or "/project"
        results, pins = self._earlier_results(manager, job)
        avoid = (f"node.id!={node_id}" for node_id in job.avoid)  # nodes this run lost
        tagged = (part.strip() for part in job.tag.get("constraint", "").split(",") if part.strip())
        constraints = [f"node.platform.arch=={arch}", *self.settings.constraints, *tagged, *avoid]
        service_id = manager.create_job(
            ref,
            command=["python3", "-c", WAIT_FOR_JOB],
            name=f"mm4-run-{job.key}",
            labels={LABEL_PROJECT: self.config.image_name, LABEL_RUN: job.key},
            container_labels={LABEL_PROJECT: self.config.image_name, LABEL_RUN: job.key},
            workdir=root,
            **run_as(self.config, self.settings.data, root, results, self.settings),
            constraints=constraints,
            stop_grace_period=int(STOP_GRACE_S * 1e9),
        )
        info["service"] = service_id
        log_line(job, f"service {service_id[:12]} created; constraints: {', '.join(constraints)}")
        task = _Task(manager, service_id, root=root, pins=pins)
        try:
            job.phase("waiting for Swarm to place the run")
            self._attach(task, job, info, deadline=time.monotonic() + min(PLACE_TIMEOUT_S, job.timeout_s))
        except BaseException:
            self.release(task)
            raise
        return task

    def _ref(self, image: Image) -> str:
        """The image's name in the pool's registry, which nodes pull."""
        return f"{self.settings.registry}/{image.tag}"

    def _attach(self, task: _Task, job: Job, info: dict[str, Any], deadline: float, ended_ok: bool = False) -> None:
        """Wait for the task to run on a node, then open that node's engine and find its container.
        ``ended_ok``: a task that ended meanwhile is followed too (re-attaching: its results are there)."""
        while True:
            tasks = task.manager.tasks(task.service_id)
            current = tasks[0] if tasks else None
            status = (current or {}).get("Status", {})
            state = status.get("State", "")
            container_id = status.get("ContainerStatus", {}).get("ContainerID")
            ended = state in ("complete", "failed", "shutdown")
            if current and container_id and (state in ("starting", "running") or (ended_ok and ended)):
                break
            if current and (ended or state in ("rejected", "orphaned")):
                raise SwarmRefused(f"Swarm's task is {state}: {status.get('Err') or status.get('Message')}")
            err = status.get("Err") or ""
            if "constraint" in err or "no suitable node" in err and "insufficient" not in err:
                raise SwarmRefused(f"Swarm cannot place the run: {err}. `mm4watch doctor {self.name}` lists the nodes")
            if time.monotonic() > deadline:
                raise SwarmRefused(f"Swarm did not place the run within {PLACE_TIMEOUT_S:.0f}s ({err or state})")
            time.sleep(0.05)  # placement takes a few hundred ms: look often
        task.node_id = str(current["NodeID"])
        node = task.manager.node(task.node_id) or {}
        desc = node.get("Description", {})
        task.node = {
            "hostname": desc.get("Hostname"),
            "arch": desc.get("Platform", {}).get("Architecture"),
            "engine_version": desc.get("Engine", {}).get("EngineVersion"),
            "addr": node.get("Status", {}).get("Addr"),
            "id": task.node_id,
        }
        info["node"] = dict(task.node)
        job.place(str(task.node["hostname"]))
        task.engine = Engine(swarm_nodes.node_engine(self.settings, node)).open()
        task.container = task.engine.container(str(container_id))
        if task.container is None:
            raise SwarmRefused(f"the task's container {container_id[:12]} is not on {task.node['hostname']}")
        log_line(job, f"placed on {task.node['hostname']} ({task.node['arch']}, engine {task.node['engine_version']})")

    def start(self, handle: _Task, job: Job) -> None:
        assert handle.engine is not None and handle.container is not None
        handle.log = open(job.log_path, "ab")  # noqa: SIM115 (closed in release)
        if handle.since is None:  # a new run: its runner and job go in; `go` (last) starts it
            handle.container.put_archive("/", lib_tar().data)
            handle.container.put_archive(
                "/", job_tar(job, handle.root, notebook_dir(self.config, handle.root, job), self.config.project.results)
            )
        handle.pump = handle.engine.follow_logs(handle.container, handle.log, since=handle.since)

    def poll(self, handle: _Task, job: Job, wait_s: float) -> int | None:
        assert handle.engine is not None and handle.container is not None
        step = min(wait_s, 2.0)  # short waits: the node's state is checked between them
        try:
            code = handle.engine.wait(handle.container, step)
        except Exception as exc:  # the node's engine does not answer
            code = None
            self._check_node(handle, job, f"its engine stopped answering ({type(exc).__name__})")
            if not handle.lost:
                time.sleep(step)  # Swarm marks a node down some seconds after its engine stops answering
        else:
            if code is None:
                self._check_node(handle, job, "")
        if handle.lost:
            return -1
        return code

    def _check_node(self, handle: _Task, job: Job, why: str) -> None:
        try:
            node = handle.manager.node(handle.node_id)
        except Exception as exc:  # the manager does not answer now: asked again at the next poll
            log_line(job, f"the swarm's manager did not answer ({type(exc).__name__}); asking again")
            return
        state = (node or {}).get("Status", {}).get("State", "unknown") if node else "gone"
        if state in LOST_STATES or state == "gone":
            handle.lost = f"node {handle.node.get('hostname')} is {state}" + (f"; {why}" if why else "")
            log_line(job, f"{handle.lost}: the run is lost")

    def fetch(self, handle: _Task, job: Job) -> None:
        if handle.lost or handle.engine is None or handle.container is None:
            return
        try:
            handle.engine.fetch(handle.container, OUTPUT, job.run_dir, skip=RESERVED_NAMES, log=job.log_path)
        except Exception:
            self._check_node(handle, job, "results could not be fetched")
            if not handle.lost:
                raise

    def stop(self, handle: _Task) -> None:
        if handle.container is not None and not handle.lost:
            try:
                handle.container.stop(STOP_GRACE_S)
            except Exception:
                pass  # its node is gone: removing the service ends what is left

    def release(self, handle: _Task) -> None:
        try:
            if handle.pump is not None:
                handle.pump.join(timeout=0 if handle.lost else 10)
            if handle.log is not None:
                handle.log.close()
            self.let_go_earlier(handle.pins)
            try:
                handle.manager.remove_service(handle.service_id)
            except Exception:
                pass  # the manager went away; `mm4watch gc` finds services by their labels
            if handle.container is not None and not handle.lost:
                try:
                    # Swarm keeps an ended task's container on its node after the service goes
                    handle.container.remove()
                except Exception:
                    pass  # already gone with its service
        finally:
            if handle.engine is not None:
                handle.engine.close()
            handle.manager.close()

    def find(self, job: Job, info: dict[str, Any]) -> _Task | None:
        """The run's service, after mm4watch's own process died: follow it again."""
        manager = Engine(self.settings).open()
        ids = manager.service_ids({LABEL_RUN: job.key})
        if not ids:
            manager.close()
            return None
        task = _Task(manager, ids[0], since=time.time())
        info["service"] = ids[0]
        try:
            self._attach(task, job, info, deadline=time.monotonic() + 30, ended_ok=True)
        except SwarmRefused:  # its task is gone (rejected, removed): nothing to follow
            self.release(task)
            return None
        except BaseException:  # a node or engine that does not answer: said, not taken for a gone run
            self.release(task)
            raise
        return task

    # -- what the commands around a run ask ---------------------------------------------

    def places(self) -> int:
        """Nodes ready and active."""
        with Engine(self.settings) as manager:
            return sum(1 for node in manager.nodes() if swarm_nodes.usable(node))

    def doctor(self, report: Checkup) -> None:
        """The manager, each node (state, availability, arch, cpus, memory), the registry and results from each."""

        manager = self._doctor_reach(report, "manager")
        if manager is None:
            return
        with manager:
            swarm = manager.info().get("Swarm", {})
            if not swarm.get("ControlAvailable"):
                report.fail(
                    "manager",
                    f"{manager.label} is not a swarm manager (swarm state: {swarm.get('LocalNodeState') or 'inactive'})",
                    "run `docker swarm init --advertise-addr <its LAN address>` there, "
                    "or point host at a manager (`docker node ls` on one lists them)",
                )
                return
            nodes = manager.nodes()
            report.ok("manager", f"{manager.label}: a manager of a swarm of {len(nodes)} node(s)")
            probe = f"{self.settings.registry}/mm4-doctor-probe:1"
            pushed = swarm_nodes.doctor_push(self.settings, report, manager, probe)
            ready = sum(
                swarm_nodes.doctor_node(self.settings, report, node, nodes, probe if pushed else None) for node in nodes
            )
            if ready == 0:
                report.fail("nodes", "no node is ready and active", "start Docker on the nodes; `docker node ls`")

    def _earlier_results(self, manager: Engine, job: Job) -> tuple[str | None, list[tuple[ssh.Target, str, str]]]:
        """Earlier runs this run may load, made present (and pinned) on every ready node: the task may land on any."""
        places: dict[str, str] = {}  # by node ID
        pins = []
        for node in manager.nodes():
            if not swarm_nodes.usable(node):
                continue
            target = ssh.shared(swarm_nodes.node_target(self.settings, node))
            pushed = self.send_earlier(
                job, target, self.settings.workdir or "mm4watch", where=str(node.get("Description", {}).get("Hostname"))
            )
            if pushed is None:
                return None, []
            places[str(node.get("ID"))] = pushed.remote_dir
            pins.append((target, pushed.remote_dir, job.key))
        if len(set(places.values())) == 1:
            return next(iter(places.values())), pins
        log_line(
            job,
            f"earlier results are at different paths on the nodes ({places}): not mounted; give the nodes one ssh user",
        )
        return None, pins


def _arch_line(arch: str, nodes: list[dict[str, Any]]) -> str:
    """Which nodes can run an image built for ``arch`` (others would fail at pull: they get no runs)."""
    by_arch: dict[str, list[str]] = {}
    for node in nodes:
        desc = node.get("Description", {})
        by_arch.setdefault(str(desc.get("Platform", {}).get("Architecture")), []).append(str(desc.get("Hostname")))
    can = ", ".join(sorted(by_arch.pop(arch, []))) or "none"
    line = f"the image is built for {arch} (the manager's architecture): runs go to {can}"
    if by_arch:
        others = "; ".join(f"{', '.join(sorted(names))} ({a})" for a, names in sorted(by_arch.items()))
        line += f"; not to {others}, whose architecture differs (build on such a node to use them)"
    return line
