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
import io
import json
import secrets
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..core import proc
from ..core.config import ENV_OUTPUT_DIR, DockerConfig
from ..remote import awake, ssh
from ..remote.docker_engine import LABEL_PROJECT, LABEL_RUN, LABEL_WARM, BuildFailed, Container, Engine, Image
from ..results.records import BUILD_LOG_NAME, RESERVED_NAMES
from ..run import buildctx
from . import Job, Outcome
from .base import RESULT_DIR, RUNNER, STOP_GRACE_S, Executor, H, job_spec, log_line, runner_files

RUN_UID = 1000  # containers never run as root
OUTPUT = "/output"
JOB = "/mm4/job"
LIB = "/mm4/lib"
WARM_IDLE_S = 3600  # an unused warm container exits after an hour
RUN_CPU_SHARES = 1024  # Docker's default weight
WARM_CPU_SHARES = 2  # a warm container starting up takes only CPU nobody else wants


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


class EngineExecutor(Executor[H]):
    """An executor that talks to a Docker engine: ``check()`` reaches it and keeps the connection
    for the ``execute()`` that follows (no second connection); ``prepare`` closes it on failure."""

    cfg: DockerConfig
    _checked: Engine | None = None

    def check(self) -> None:
        if self._checked is None:
            self._checked = Engine(self.cfg).open()

    def _engine(self) -> Engine:
        engine, self._checked = self._checked, None
        return engine if engine is not None else Engine(self.cfg).open()

    def prepare(self, job: Job, info: dict[str, Any]) -> H | Outcome:
        engine = self._engine()
        try:
            return self._prepare(engine, job, info)
        except BaseException:
            engine.close()
            raise

    def _prepare(self, engine: Engine, job: Job, info: dict[str, Any]) -> H | Outcome:
        raise NotImplementedError

    def _build(
        self, engine: Engine, job: Job, info: dict[str, Any], then: Callable[[Image, IO[str]], None] | None = None
    ) -> Image | Outcome:
        """The run image on ``engine``, built unless it is there, logged to build.log (``then``:
        more work on it there, e.g. a push); a failed build is a failed run that says so."""
        ctx = buildctx.make(self.config)
        info["context_hash"] = ctx.digest
        job.phase(f"building on {engine.label}")
        try:
            with open(job.run_dir / BUILD_LOG_NAME, "a", encoding="utf-8") as log:
                image = engine.ensure_image(ctx, self.config.image_name, self.config.project.dockerfile, log)
                if then is not None:
                    then(image, log)
        except BuildFailed as exc:
            engine.close()
            return Outcome("failed", {"cell": None, "ename": "BuildError", "evalue": f"{exc} (see build.log)"}, info)
        return image


class DockerExecutor(EngineExecutor[_Run]):
    type = "docker"
    _results_source: str | None = None  # where earlier results are on the engine's machine

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "host": self.cfg.host or f"context:{self.cfg.context}"}

    def died_detail(self, code: int | None) -> str:
        hint = " (out of memory? raise memory in mm4.toml)" if code == 137 else ""
        return f"the container exited with code {code} and no result{hint}; see run.log"

    def execute(self, job: Job) -> Outcome:
        return refusals_fail(
            job, "the Docker engine", self.describe(), lambda: super(DockerExecutor, self).execute(job)
        )

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
        if self.cfg.sync_data and self.cfg.data and target is not None:
            local_data = self.config.root / self.config.project.data
            if local_data.is_dir():
                _log(job, f"syncing {self.config.project.data}/ to {target.label}:{self.cfg.data}")
                ssh.rsync_to(target, local_data, self.cfg.data)

        self._results_source = self._earlier_results(engine, job)
        root = engine.working_dir(image.tag).rstrip("/") or "/project"
        rel_cwd = job.cwd.resolve().relative_to(self.config.root).as_posix()
        workdir = root if rel_cwd == "." else f"{root}/{rel_cwd}"
        lib = _lib_tar()
        key = hashlib.sha256(
            json.dumps(
                [image.id, root, self.cfg.data, self._results_source, self.cfg.cpus, self.cfg.memory, lib.digest]
            ).encode()
        ).hexdigest()[:16]
        container = self._claim_warm(engine, key, job) if self.cfg.warm else None
        info["warm"] = container is not None
        if container is None:
            container = self._create(
                engine,
                image.tag,
                root,
                f"mm4-run-{job.key}",
                ["python3", "-m", RUNNER, f"{JOB}/spec.json"],
                {LABEL_RUN: job.key},
            )
            container.put_archive("/", lib.data)
        info["container"] = container.short_id
        run = _Run(engine, container, warm=bool(info["warm"]))
        try:
            container.put_archive("/", _job_tar(job, root, workdir, self.config.project.results))
        except BaseException:
            self.release(run)
            raise
        if self.cfg.warm:
            run.then = threading.Thread(
                target=self._prepare_warm, args=(engine, image.tag, root, key, lib), name="mm4-warm", daemon=True
            )
        return run

    def _ssh_target(self) -> ssh.Target | None:
        """The engine's machine over ssh, when it is reached that way."""
        if self.cfg.host and self.cfg.host.startswith("ssh://"):
            return ssh.shared(ssh.Target.parse(self.cfg.host, self.cfg.ssh_options))
        return None

    def _keep_awake(self, handle: _Run, job: Job) -> None:
        """The container runs in Docker's VM, no process of the Mini's own to follow: the assertion is
        held for the run's timeout at most, and let go when the run ends."""
        target = self._ssh_target()
        if target is None:
            return
        pid_file = f"{self.cfg.workdir or 'mm4watch'}/.awake/{job.key}"
        try:
            said = ssh.run(target, awake.for_seconds(job.timeout_s, pid_file), timeout=30).stdout.decode()
        except (ssh.Unreachable, proc.CommandFailed) as exc:
            _log(job, f"could not keep {target.label} awake: {exc}")
            return
        if awake.HELD in said.split():
            handle.awake = pid_file
            _log(job, f"{target.label} is kept awake while the run lasts (caffeinate -i)")

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
                handle.container.remove()
            except Exception:
                pass  # the engine went away; gc finds it by its labels later
            if handle.then is not None and handle.then.is_alive():
                handle.then.join(timeout=60)
            if handle.awake and (target := self._ssh_target()) is not None:
                try:
                    ssh.run(target, awake.let_go(handle.awake), timeout=30)
                except (ssh.Unreachable, proc.CommandFailed):
                    pass  # the Mini went away; caffeinate ends at the run's timeout anyway
        finally:
            handle.engine.close()

    def find(self, job: Job, info: dict[str, Any]) -> _Run | None:
        """The run's container on the engine, after mm4watch's own process died."""
        engine = Engine(self.cfg).open()
        container = engine.container(f"mm4-run-{job.key}")
        if container is None:
            engine.close()
            return None
        info.update(engine.describe())
        run = _Run(engine, container, warm=True, since=time.time())
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
        cpu_shares: int = RUN_CPU_SHARES,
    ) -> Container:
        return engine.create(
            tag,
            name=name,
            command=command,
            user=f"{RUN_UID}:{RUN_UID}",
            working_dir=root,
            environment={
                ENV_OUTPUT_DIR: OUTPUT,
                "HOME": "/mm4/home",
                "PYTHONPATH": LIB,
                "PYTHONUNBUFFERED": "1",
            },
            labels={LABEL_PROJECT: self.config.image_name, **labels},
            security_opt=["no-new-privileges"],
            cap_drop=["ALL"],
            mounts=self._mounts(root),
            nano_cpus=int(self.cfg.cpus * 1e9) if self.cfg.cpus else None,
            mem_limit=self.cfg.memory,
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

    def _prepare_warm(self, main: Engine, tag: str, root: str, key: str, lib: _Tar) -> None:
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
                cpu_shares=WARM_CPU_SHARES,  # starting it never slows a running notebook
            )
            warm.put_archive("/", lib.data)
            warm.start()
        except Exception:
            pass  # a warm container only saves time; the next run starts cold instead
        finally:
            if engine is not None:
                engine.close()

    def _mounts(self, root: str) -> list[Any]:
        from docker.types import Mount

        mounts = []
        if self.cfg.data:
            mounts.append(
                Mount(target=f"{root}/{self.config.project.data}", source=self.cfg.data, type="bind", read_only=True)
            )
        if self._results_source:  # earlier runs, where the notebook looks for them: ../results
            mounts.append(
                Mount(
                    target=f"{root}/{self.config.project.results}",
                    source=self._results_source,
                    type="bind",
                    read_only=True,
                )
            )
        return mounts

    def _earlier_results(self, engine: Engine, job: Job) -> str | None:
        """The folder on the engine's machine that holds the earlier runs this run may load."""
        if not job.mirror:
            return None
        target = self._ssh_target()
        if target is not None:
            from ..remote import mirror

            remote = mirror.remote_dir(self.config, self.cfg.workdir or "mm4watch")
            pushed = mirror.push(target, self.config.results_dir, remote, job.inputs)
            _log(job, pushed.line(len(job.inputs)))
            return pushed.remote_dir
        if engine.tunnel is None and engine.base_url.startswith("unix://"):
            self.config.results_dir.mkdir(parents=True, exist_ok=True)
            return str(self.config.results_dir)  # the engine runs on this machine: the folder itself
        _log(job, "earlier results are not visible on this engine (it is reached over TCP); use an ssh:// host")
        return None


@dataclass(frozen=True)
class _Tar:
    data: bytes
    digest: str


def _tar(add: Any) -> bytes:
    buffer = io.BytesIO()
    # gzip: the engine unpacks it, and the link carries a quarter of the bytes
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        add(tar)
    return buffer.getvalue()


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, RUN_UID, RUN_UID
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid = len(data), 0o644, RUN_UID, RUN_UID
    tar.addfile(info, io.BytesIO(data))


def _lib_tar() -> _Tar:
    """mm4watch's own runner (pure Python), and the folders a run writes to."""
    from .base import runner_digest

    package, files = runner_files()

    def add(tar: tarfile.TarFile) -> None:
        made = set()
        for folder in ("mm4", "mm4/home", "mm4/job", "mm4/lib", "output", f"output/{RESULT_DIR}"):
            _add_dir(tar, folder)
        for path in files:
            rel = path.relative_to(package.parent).as_posix()
            for parent in reversed(Path(rel).parents[:-1]):
                if parent not in made:
                    _add_dir(tar, f"mm4/lib/{parent.as_posix()}")
                    made.add(parent)
            _add_file(tar, f"mm4/lib/{rel}", path.read_bytes())

    return _Tar(_tar(add), runner_digest())


def _job_tar(job: Job, root: str, workdir: str, results: str) -> bytes:
    """The run spec and the notebook; ``go`` comes last, so a warm container sees a whole job."""
    spec = job_spec(
        job, notebook=f"{JOB}/input.ipynb", output_dir=OUTPUT, cwd=workdir, project=root, results=f"{root}/{results}"
    )

    def add(tar: tarfile.TarFile) -> None:
        # the run's folder exists even when the Dockerfile copies no code (it installs only
        # dependencies): made here, as in the image otherwise; the runner says when it is empty
        parts = Path(workdir.strip("/")).parts
        for depth in range(1, len(parts) + 1):
            _add_dir(tar, "/".join(parts[:depth]))
        _add_file(tar, "mm4/job/spec.json", json.dumps(spec).encode())
        _add_file(tar, "mm4/job/input.ipynb", job.input_path.read_bytes())
        _add_file(tar, "mm4/job/go", b"")

    return _tar(add)


def refusals_fail(job: Job, who: str, info: dict[str, Any], attempt: Callable[[], Outcome]) -> Outcome:
    """``attempt()``, with an engine's refusal (a Docker API error) a failed run that says what, not a crash."""
    import docker

    try:
        return attempt()
    except docker.errors.DockerException as exc:
        explanation = str(getattr(exc, "explanation", None) or exc)
        _log(job, f"{who} refused: {explanation}")
        return Outcome("failed", {"cell": None, "ename": "DockerError", "evalue": explanation}, info)


_log = log_line
