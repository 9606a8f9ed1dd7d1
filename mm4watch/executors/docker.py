"""The Docker executor: build where it runs, execute in a container, bring results home.

1. Connect (over ssh:// through the system ssh client) and describe the engine.
2. Build the run image from the project's Dockerfile on that engine, unless an
   image with the same context hash is there already.
3. Create a container (non-root, no-new-privileges, all capabilities dropped,
   data/ mounted read-only, labelled with project and run), copy in the
   notebook, the run spec and mm4watch's own runner, and start it.
4. Stream its output into run.log; every ``harvest_every`` bring /output home
   so a dead engine loses little; stop it on timeout or ^C.
5. Bring /output and the executed notebook home, also after a failure, then
   remove the container.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from ..core import checks, proc
from ..core.config import ConfigProblem, setting
from ..core.errors import Mm4Error
from ..remote import awake, ssh
from ..remote.docker_engine import (
    LABEL_PROJECT,
    LABEL_RUN,
    LABEL_WARM,
    Container,
    Engine,
    Image,
)
from ..results.records import BUILD_LOG_NAME, RESERVED_NAMES
from . import Job, Outcome
from .base import STOP_GRACE_S, RemoteConfig
from .container import JOB, OUTPUT, Tar, job_tar, lib_tar, notebook_dir, run_as
from .engine import EngineExecutor, docker_time
from .far_side import RUNNER
from .runlog import log_line
from .upkeep import gc_copies

WARM_IDLE_S = 3600  # an unused warm container exits after an hour
RUN_CPU_SHARES = 1024  # Docker's default weight
WARM_CPU_SHARES = 2  # a warm container starting up takes only CPU nobody else wants


@dataclass(frozen=True)
class DockerConfig(RemoteConfig):
    """``type = "docker"``: a container on a Docker engine, built there."""

    context: str | None = setting(checks.text)  # a docker CLI context (with TLS) instead of host
    keep_images: int = setting(checks.positive_int, 3)  # this project's images `gc` keeps on the engine
    insecure: bool = setting(checks.boolean, False)
    cpus: float | None = setting(checks.positive_number)
    memory: str | None = setting(checks.memory)
    # the engine's socket beyond ssh:// (default: the account's current docker context's, else the first of
    # Docker Desktop's, OrbStack's, colima's, Rancher Desktop's and /var/run/docker.sock that exists there)
    socket: str | None = setting(checks.abs_path)
    warm: bool = setting(checks.boolean, True)  # keep a container with a started kernel waiting for the next run
    builder: str = setting(checks.one_of("auto", "classic"), "auto")  # auto: BuildKit where the engine's machine has it
    docker_cli: str | None = setting(checks.abs_path)  # the docker CLI on the engine's machine (default: looked for)
    build_cache_max: int = setting(checks.size, 20 << 30)  # `gc` trims the BuildKit cache there to this size

    def check(self) -> None:
        if not (self.host or self.context):
            raise ConfigProblem(None, f'a {self.type} executor needs host = "ssh://user@machine" (or context = "name")')
        if self.host:
            scheme = self.host.split("://", 1)[0] if "://" in self.host else ""
            if scheme not in ("ssh", "unix", "tcp"):
                raise ConfigProblem(
                    "host", f"is {self.host!r}; write ssh://user@machine[:port], unix:///path or tcp://machine:2376"
                )
            if scheme == "tcp" and not self.insecure:
                raise ConfigProblem(
                    "host",
                    f"is {self.host!r}: plain TCP sends everything unencrypted and gives root on that machine to "
                    'anyone on the network. Use ssh://user@machine, a Docker context with TLS (context = "name"), '
                    "or set insecure = true if you really mean it",
                )
        super().check()


@dataclass
class _Run:
    engine: Engine
    container: Container
    warm: bool = False  # a warm container: already running, waits for its job
    since: float | None = None  # re-attached: logs from now on (the earlier ones are home)
    log: IO[bytes] | None = None
    pump: threading.Thread | None = None
    then: threading.Thread | None = None  # prepares the next warm container beside this run
    awake: str | None = None  # the Mini is kept awake for the run: caffeinate's pid file there
    results: str | None = None  # where this run's earlier results are on the engine's machine
    pins: list[tuple[ssh.Target, str, str]] = field(default_factory=list)  # earlier results it holds there
    keep: bool = False  # its files did not come home: the container stays for them


class DockerExecutor(EngineExecutor[_Run]):
    type = "docker"
    config_class = DockerConfig

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "host": self.settings.host or f"context:{self.settings.context}"}

    def died_detail(self, code: int | None) -> str:
        hint = " (out of memory? raise memory in mm4.toml)" if code == 137 else ""
        return f"the container exited with code {code} and no result{hint}; see run.log"

    # -- the transport -------------------------------------------------------------

    def _prepare(self, engine: Engine, job: Job, info: dict[str, Any]) -> _Run | Outcome:
        info.update(engine.describe())
        image: Image | Outcome | None = engine.find_image(job.image) if job.image else None
        if isinstance(image, Image):  # a rerun on the image its run had
            info["context_hash"] = image.tag.rsplit("ctx-", 1)[-1]
            (job.run_dir / BUILD_LOG_NAME).write_text(
                f"image {job.image} is still on {engine.label}: the run's own image, no build\n"
            )
        else:
            image = self._build(engine, job, info)
            if isinstance(image, Outcome):
                return image
        info.update(image=image.tag, image_id=image.id, image_built=image.built)

        target = self._ssh_target()
        if self.settings.sync_data and self.settings.data and target is not None:
            local_data = self.config.root / self.config.project.data
            if local_data.is_dir():
                log_line(job, f"syncing {self.config.project.data}/ to {target.label}:{self.settings.data}")
                ssh.rsync_to(target, local_data, self.settings.data)

        results, pins = self._earlier_results(engine, job)
        root = engine.working_dir(image.tag).rstrip("/") or "/project"
        workdir = notebook_dir(self.config, root, job)
        lib = lib_tar()
        key = hashlib.sha256(
            json.dumps(
                [image.id, root, self.settings.data, results, self.settings.cpus, self.settings.memory, lib.digest]
            ).encode()
        ).hexdigest()[:16]
        container = self._claim_warm(engine, key, job) if self.settings.warm else None
        info["warm"] = container is not None
        if container is None:
            container = self._create(
                engine,
                image.tag,
                root,
                f"mm4-run-{job.key}",
                ["python3", "-m", RUNNER, f"{JOB}/spec.json"],
                {LABEL_RUN: job.key},
                results,
            )
            container.put_archive("/", lib.data)
        info["container"] = container.short_id
        run = _Run(engine, container, warm=bool(info["warm"]), results=results, pins=pins)
        try:
            container.put_archive("/", job_tar(job, root, workdir, self.config.project.results))
        except BaseException:
            self.release(run)
            raise
        if self.settings.warm:
            run.then = threading.Thread(
                target=self._prepare_warm,
                args=(engine, image.tag, root, key, lib, results),
                name="mm4-warm",
                daemon=True,
            )
        return run

    def _ssh_target(self) -> ssh.Target | None:
        """The engine's machine over ssh, when it is reached that way."""
        if self.settings.host and self.settings.host.startswith("ssh://"):
            return ssh.shared(ssh.Target.parse(self.settings.host, self.settings.ssh_options))
        return None

    def _keep_awake(self, handle: _Run, job: Job) -> None:
        """The container runs in Docker's VM, no process of the Mini's own to follow: the assertion is
        held for the run's timeout at most, and let go when the run ends."""
        target = self._ssh_target()
        if target is None:
            return
        pid_file = f"{self.settings.workdir or 'mm4watch'}/.awake/{job.key}"
        try:
            said = ssh.run(target, awake.for_seconds(job.timeout_s, pid_file), timeout=30).stdout.decode()
        except (ssh.Unreachable, proc.CommandFailed) as exc:
            log_line(job, f"could not keep {target.label} awake: {exc}")
            return
        if awake.HELD in said.split():
            handle.awake = pid_file
            log_line(job, f"{target.label} is kept awake while the run lasts (caffeinate -i)")

    def start(self, handle: _Run, job: Job) -> None:
        handle.log = open(job.log_path, "ab")  # noqa: SIM115 (closed in release)
        self._keep_awake(handle, job)
        if not handle.warm:  # a warm container runs already: its job's `go` file starts it
            handle.container.start()
        handle.pump = handle.engine.follow_logs(handle.container, handle.log, since=handle.since)
        if handle.then is not None:
            handle.then.start()

    def poll(self, handle: _Run, job: Job, wait_s: float) -> int | None:
        return handle.engine.wait(handle.container, wait_s)

    def fetch(self, handle: _Run, job: Job) -> None:
        handle.engine.fetch(handle.container, OUTPUT, job.run_dir, skip=RESERVED_NAMES, log=job.log_path)

    def stop(self, handle: _Run) -> None:
        handle.container.stop(STOP_GRACE_S)

    def release(self, handle: _Run) -> None:
        try:
            if handle.pump is not None:
                handle.pump.join(timeout=10)
            if handle.log is not None:
                handle.log.close()
            try:
                if not handle.keep:
                    handle.container.remove()
            except Exception:
                pass  # the engine went away; gc finds it by its labels later
            if handle.then is not None and handle.then.is_alive():
                handle.then.join(timeout=60)
            self.let_go_earlier(handle.pins)
            if handle.awake and (target := self._ssh_target()) is not None:
                try:
                    ssh.run(target, awake.let_go(handle.awake), timeout=30)
                except (ssh.Unreachable, proc.CommandFailed):
                    pass  # the Mini went away; caffeinate ends at the run's timeout anyway
        finally:
            handle.engine.close()

    # -- the Mini went away mid-run -------------------------------------------------------

    rides_out_loss = True

    def keep_there(self, handle: _Run) -> str:
        handle.keep = True
        return f"its container {handle.container.name}"

    def answers(self) -> bool:
        if self.settings.host and self.settings.host.startswith("ssh://"):
            return ssh.probe(ssh.Target.parse(self.settings.host, self.settings.ssh_options))
        try:
            Engine(self.settings).open().close()
        except Mm4Error:
            return False
        return True

    def reconnect(self, handle: _Run, job: Job, went_at: float) -> tuple[str, int | None, str]:
        try:
            handle.engine.close()
        except Exception:  # noqa: BLE001 (the old connection is dead; closing it has nothing to lose)
            pass
        handle.engine = Engine(self.settings).open()
        name = f"mm4-run-{job.key}"
        state = handle.engine.state(name)
        if state is None:
            return "ended", None, f"its container {name} is gone there"
        status, code, finished = state
        container = handle.engine.container(name)
        assert container is not None
        handle.container = container
        if status == "running":
            handle.pump = handle.engine.follow_logs(container, handle.log, since=time.time()) if handle.log else None
            return "running", None, ""
        return "ended", code, self._what_happened(finished, went_at)

    def _what_happened(self, finished: str, went_at: float) -> str:
        """Why the container stopped while the Mini was away: a restart of the machine (its boot time
        is after the loss) or of its Docker engine (the container stopped with it)."""
        from ..core.durations import clock_time

        stopped = docker_time(finished)
        at = f" at {clock_time(stopped)}" if stopped else ""
        booted = None
        if self.settings.host and self.settings.host.startswith("ssh://"):
            try:
                target = ssh.Target.parse(self.settings.host, self.settings.ssh_options)
                booted = ssh.restarted_since(ssh.run(target, ssh.BOOT_TIME, timeout=15).stdout.decode(), went_at)
            except Mm4Error:
                booted = None
        if booted is not None:
            return f"the Mini restarted at {clock_time(booted)}, without the run's container"
        return f"its Docker engine restarted{at}, without the run's container"

    def find(self, job: Job, info: dict[str, Any]) -> _Run | None:
        """The run's container on the engine, after mm4watch's own process died."""
        engine = Engine(self.settings).open()
        container = engine.container(f"mm4-run-{job.key}")
        if container is None:
            engine.close()
            return None
        info.update(engine.describe())
        target = self._ssh_target()
        pins = [(target, self._copy(), job.key)] if target is not None else []  # what its first process pinned
        run = _Run(engine, container, warm=True, since=time.time(), pins=pins)
        self.start(run, job)  # follows its log from now on; it runs already
        return run

    def _create(
        self,
        engine: Engine,
        tag: str,
        root: str,
        name: str,
        command: list[str],
        labels: dict[str, str],
        results: str | None,
        cpu_shares: int = RUN_CPU_SHARES,
    ) -> Container:
        return engine.create(
            tag,
            name=name,
            command=command,
            working_dir=root,
            labels={LABEL_PROJECT: self.config.image_name, **labels},
            security_opt=["no-new-privileges"],
            **run_as(self.config, self.settings.data, root, results, self.settings),
            cpu_shares=cpu_shares,
        )

    def _claim_warm(self, engine: Engine, key: str, job: Job) -> Container | None:
        """Take an idle warm container for this image and settings, if one waits."""
        for candidate in engine.containers({LABEL_PROJECT: self.config.image_name, LABEL_WARM: key}):
            if candidate.status != "running" or not candidate.name.startswith("mm4-warm-"):
                continue
            try:
                candidate.rename(f"mm4-run-{job.key}")  # claimed: no other run takes it now
                candidate.set_cpu_shares(RUN_CPU_SHARES)  # it waited at low priority
            except Exception:
                continue
            return candidate
        return None

    def _prepare_warm(self, main: Engine, tag: str, root: str, key: str, lib: Tar, results: str | None) -> None:
        """Leave one warm container for the next run of this image and settings."""
        engine = None
        try:
            engine = main.sibling()  # a client of its own: this runs beside the run's calls
            idle = 0
            for old in engine.containers({LABEL_PROJECT: self.config.image_name, LABEL_WARM: ""}):
                if not old.name.startswith("mm4-warm-"):
                    continue
                if old.status != "running" or old.labels.get(LABEL_WARM) != key:
                    old.remove()  # expired, or for an image or settings no longer used
                else:
                    idle += 1
            if idle:
                return
            warm = self._create(
                engine,
                tag,
                root,
                f"mm4-warm-{key}-{secrets.token_hex(4)}",
                ["python3", "-m", RUNNER, "--warm", JOB, str(WARM_IDLE_S)],
                {LABEL_WARM: key},
                results,
                cpu_shares=WARM_CPU_SHARES,  # starting it never slows a running notebook
            )
            warm.put_archive("/", lib.data)
            warm.start()
        except (Mm4Error, OSError) as exc:  # a warm container only saves time: the next run starts cold
            print(f"mm4watch: no warm container left for the next run: {exc}", file=sys.stderr)
        finally:
            if engine is not None:
                engine.close()

    # -- what the commands around a run ask ---------------------------------------------

    def gc(self, keep: int | None) -> list[str]:
        lines = super().gc(keep)
        target = self._ssh_target()
        if target is not None:
            lines += gc_copies(target, self.config, self.settings.workdir or "mm4watch")
        return lines

    def _copy(self) -> str:
        """The project's copy of earlier results on the engine's machine (under the ssh user's home)."""
        from ..remote import mirror

        return mirror.remote_dir(self.config, self.settings.workdir or "mm4watch")

    def _earlier_results(self, engine: Engine, job: Job) -> tuple[str | None, list[tuple[ssh.Target, str, str]]]:
        """The folder on the engine's machine that holds the earlier runs this run may load, and the pin it holds."""
        if job.earlier is None or job.earlier.mode == "none":
            return None, []
        target = self._ssh_target()
        if target is not None:
            pushed = self.send_earlier(job, target, self.settings.workdir or "mm4watch")
            return (pushed.remote_dir, [(target, pushed.remote_dir, job.key)]) if pushed else (None, [])
        if engine.tunnel is None and engine.base_url.startswith("unix://"):
            self.config.results_dir.mkdir(parents=True, exist_ok=True)
            return str(self.config.results_dir), []  # the engine runs on this machine: the folder itself
        log_line(job, "earlier results are not visible on this engine (it is reached over TCP); use an ssh:// host")
        return None, []
