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

import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import mm4watch

from .. import buildctx, ssh
from ..config import ENV_OUTPUT_DIR, ENV_RUN_ID, Config, ExecutorConfig
from ..durations import format_duration
from ..engine import LABEL_PROJECT, LABEL_RUN, BuildFailed, Engine
from ..records import BUILD_LOG_NAME, RESERVED_NAMES
from . import Job, Outcome

RUN_UID = 1000  # containers never run as root
OUTPUT = "/output"
JOB = "/mm4/job"
LIB = "/mm4/lib"
STOP_GRACE_S = 10


class DockerExecutor:
    def __init__(self, cfg: ExecutorConfig, config: Config) -> None:
        self.cfg = cfg
        self.config = config

    def describe(self) -> dict[str, Any]:
        return {"name": self.cfg.name, "type": "docker", "host": self.cfg.host or f"context:{self.cfg.context}"}

    def execute(self, job: Job) -> Outcome:
        engine = Engine(self.cfg).open()
        try:
            return self._execute(engine, job)
        finally:
            engine.close()

    def _execute(self, engine: Engine, job: Job) -> Outcome:
        info = {**self.describe(), **engine.describe()}
        ctx = buildctx.make(self.config)
        info["context_hash"] = ctx.digest
        build_log = job.run_dir / BUILD_LOG_NAME
        try:
            with open(build_log, "a", encoding="utf-8") as log:
                image = engine.ensure_image(ctx, self.config.image_name, self.config.project.dockerfile, log)
        except BuildFailed as exc:
            return Outcome("failed", {"cell": None, "ename": "BuildError", "evalue": f"{exc} (see build.log)"}, info)
        info.update(image=image.tag, image_id=image.id, image_built=image.built)

        if self.cfg.sync_data and self.cfg.data and self.cfg.host and self.cfg.host.startswith("ssh://"):
            local_data = self.config.root / self.config.project.data
            if local_data.is_dir():
                target = ssh.Target.parse(self.cfg.host, self.cfg.ssh_options)
                _log(job, f"syncing {self.config.project.data}/ to {target.label}:{self.cfg.data}")
                ssh.rsync_to(target, local_data, self.cfg.data)

        root = engine.working_dir(image.tag).rstrip("/") or "/project"
        rel_cwd = job.cwd.resolve().relative_to(self.config.root).as_posix()
        workdir = root if rel_cwd == "." else f"{root}/{rel_cwd}"
        container = engine.create(
            image.tag,
            command=["python3", "-m", "mm4watch.executors.papermill_child", f"{JOB}/spec.json"],
            user=f"{RUN_UID}:{RUN_UID}",
            working_dir=workdir,
            environment={
                ENV_OUTPUT_DIR: OUTPUT,
                ENV_RUN_ID: job.run_id,
                "HOME": "/mm4/home",
                "PYTHONPATH": LIB,
                "PYTHONUNBUFFERED": "1",
            },
            labels={LABEL_PROJECT: self.config.image_name, LABEL_RUN: job.run_id},
            security_opt=["no-new-privileges"],
            cap_drop=["ALL"],
            mounts=self._mounts(root),
            nano_cpus=int(self.cfg.cpus * 1e9) if self.cfg.cpus else None,
            mem_limit=self.cfg.memory,
        )
        info["container"] = container.short_id
        try:
            container.put_archive("/", _runtime_tar(job, workdir))
            with open(job.log_path, "ab") as sink:
                container.start()
                pump = engine.follow_logs(container, sink)
                status, code = self._wait(engine, container, job)
                pump.join(timeout=10)
            self._harvest(engine, container, job)
        finally:
            try:
                container.remove(force=True)
            except Exception:
                pass  # the engine went away; gc finds it by its labels later
        return _outcome(status, code, job, info)

    def _mounts(self, root: str) -> list[Any]:
        if not self.cfg.data:
            return []
        from docker.types import Mount

        target = f"{root}/{self.config.project.data}"
        return [Mount(target=target, source=self.cfg.data, type="bind", read_only=True)]

    def _wait(self, engine: Engine, container: Any, job: Job) -> tuple[str, int | None]:
        deadline = time.monotonic() + job.timeout_s
        every = self.cfg.harvest_every_s
        next_harvest = time.monotonic() + every
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    container.stop(timeout=STOP_GRACE_S)
                    return "timeout", None
                code = engine.wait(container, min(left, max(1.0, next_harvest - time.monotonic()), 30))
                if code is not None:
                    return "exited", code
                if time.monotonic() >= next_harvest:
                    self._harvest(engine, container, job)
                    next_harvest = time.monotonic() + every
        except KeyboardInterrupt:
            container.stop(timeout=STOP_GRACE_S)
            self._harvest(engine, container, job)
            raise

    def _harvest(self, engine: Engine, container: Any, job: Job) -> None:
        engine.fetch(container, OUTPUT, job.run_dir, skip=RESERVED_NAMES)
        engine.fetch(container, f"{JOB}/executed.ipynb", job.run_dir)
        engine.fetch(container, f"{JOB}/result.json", job.run_dir / ".mm4-job")


def _outcome(status: str, code: int | None, job: Job, info: dict[str, Any]) -> Outcome:
    result_path = job.run_dir / ".mm4-job" / "result.json"
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        result = None
    finally:
        result_path.unlink(missing_ok=True)
        try:
            result_path.parent.rmdir()
        except OSError:
            pass
    if status == "timeout":
        error = dict((result or {}).get("error") or {})
        error.update(ename="Timeout", evalue=f"the run exceeded its timeout of {format_duration(job.timeout_s)}")
        return Outcome("timeout", error, info)
    if result is None:
        hint = " (out of memory? raise memory in mm4.toml)" if code == 137 else ""
        return Outcome(
            "failed",
            {"cell": None, "ename": "ContainerDied", "evalue": f"the container exited with code {code} and no result{hint}; see run.log"},
            info,
        )
    return Outcome(result["status"], result.get("error"), info)


def _runtime_tar(job: Job, workdir: str) -> bytes:
    """mm4watch's runner, the run spec and the notebook, owned by the run user."""
    spec = {
        "input": f"{JOB}/input.ipynb",
        "output": f"{JOB}/executed.ipynb",
        "result": f"{JOB}/result.json",
        "parameters": job.parameters,
        "cwd": workdir,
        "kernel": job.kernel,
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add_dir(name: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, RUN_UID, RUN_UID
            tar.addfile(info)

        def add_file(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o644, RUN_UID, RUN_UID
            tar.addfile(info, io.BytesIO(data))

        for folder in ("mm4", "mm4/home", "mm4/job", "mm4/lib", "output"):
            add_dir(folder)
        package = Path(mm4watch.__file__).parent
        for path in sorted(package.rglob("*.py")):
            rel = path.relative_to(package.parent).as_posix()
            for parent in reversed(Path(rel).parents[:-1]):
                if f"mm4/lib/{parent.as_posix()}" not in tar.getnames():
                    add_dir(f"mm4/lib/{parent.as_posix()}")
            add_file(f"mm4/lib/{rel}", path.read_bytes())
        add_file("mm4/job/spec.json", json.dumps(spec).encode())
        add_file("mm4/job/input.ipynb", job.input_path.read_bytes())
    return buffer.getvalue()


def _log(job: Job, line: str) -> None:
    from ..records import now_iso

    with open(job.log_path, "a", encoding="utf-8") as fh:
        fh.write(f"[{now_iso()}] mm4watch: {line}\n")
