"""What the executors on a Docker engine share (docker, swarm): their settings, the engine reached
(over ssh:// through the system ssh client, the connection ``check()`` opened kept for the run), the
run image built there (BuildKit by the engine machine's docker CLI, else the classic builder; base
images pulled through the engine's API), doctor's way to the engine, and gc of images and BuildKit's
cache."""

from __future__ import annotations

import gzip
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from ..core import fsutil
from ..core.errors import Mm4Error
from ..core.names import quote
from ..remote import buildctx, buildkit, depbase, ssh
from ..remote.docker_engine import (
    BuildFailed,
    Engine,
    EngineRefused,
    Image,
    image_labels,
    image_tag,
)
from ..results.records import BUILD_LOG_NAME
from . import Job, Outcome
from .base import Executor, H
from .runlog import log_line
from .upkeep import MIN_FREE_GB, Checkup, check_awake, check_copies, check_ssh

if TYPE_CHECKING:
    from .docker import DockerConfig

INSECURE_WHERE = (
    "Docker Desktop: Settings > Docker Engine; OrbStack: Settings > Docker; colima: `colima start --edit`; "
    "Linux: /etc/docker/daemon.json"
)


class EngineExecutor(Executor[H]):
    """An executor that talks to a Docker engine: ``check()`` reaches it and hands the connection
    to the run (``job.reached``: no second connection); ``prepare`` closes it on failure."""

    settings: DockerConfig

    def check(self) -> Engine:
        return Engine(self.settings).open()

    def prepare(self, job: Job, info: dict[str, Any]) -> H | Outcome:
        # the connection check() made, taken by the first attempt; another attempt opens its own
        engine = job.reached.pop() if job.reached else Engine(self.settings).open()
        try:
            return self._prepare(engine, job, info)
        except BaseException:
            engine.close()
            raise

    def _prepare(self, engine: Engine, job: Job, info: dict[str, Any]) -> H | Outcome:
        raise NotImplementedError

    refuser = "the Docker engine"  # who refused, in run.log's words

    def _doctor_reach(
        self, report: Checkup, what: str, machine: Callable[[Checkup, ssh.Target], bool] | None = None
    ) -> Engine | None:
        """doctor: ssh to the engine's machine (and ``machine``'s checks there), then the engine itself;
        None, said with its fix, when either cannot be reached."""
        host = self.settings.host or ""
        if host.startswith("ssh://"):
            target = ssh.Target.parse(host, self.settings.ssh_options)
            if not check_ssh(report, target) or (machine is not None and not machine(report, target)):
                return None
        try:
            return Engine(self.settings).open()
        except Mm4Error as exc:
            report.fail(what, str(exc), "start Docker on that machine, or fix host/context in mm4.toml")
            return None

    def _attempt(self, job: Job) -> Outcome:
        """One attempt, an engine's refusal (a Docker API error) a failed run that says what, not a crash."""
        try:
            return super()._attempt(job)
        except EngineRefused as exc:
            log_line(job, f"{self.refuser} refused: {exc}")
            return Outcome("failed", {"cell": None, "ename": "DockerError", "evalue": str(exc)}, self.describe())

    def gc(self, keep: int | None) -> list[str]:
        """This project's images on the engine beyond the newest ``keep`` (``keep_images``), and its
        machine's BuildKit cache trimmed to ``build_cache_max``."""
        keep = keep or self.settings.keep_images
        with Engine(self.settings) as engine:
            removed = engine.gc(self.config.image_name, keep)
            builder = self._builder(engine)
        lines = [
            *(f"removed {tag}" for tag in removed),
            f"kept the newest {keep} image(s) of {self.config.image_name} on {self.name}; removed {len(removed)}",
        ]
        if isinstance(builder, buildkit.Builder):
            said = buildkit.prune(builder, self.settings.build_cache_max)
            lines.append(
                f"BuildKit cache on {engine.label} trimmed to {self.settings.build_cache_max / 1e6:.0f} MB "
                f"(build_cache_max): {said}"
            )
        return lines

    def _builder(self, engine: Engine) -> buildkit.Builder | str:
        """BuildKit by the engine machine's docker CLI, or why the classic builder builds."""
        if self.settings.builder == "classic":
            return 'builder = "classic" in mm4.toml'
        if engine.target is not None:
            machine = buildkit.Machine(engine.label, engine.socket, ssh.shared(engine.target), engine.product)
        elif engine.endpoint.startswith("unix://"):
            machine = buildkit.Machine("this machine", engine.endpoint.removeprefix("unix://"), None)
        else:
            return f"the engine is reached at {engine.endpoint}, not over ssh: its machine's docker CLI is out of reach"
        return buildkit.find(machine, self.settings.docker_cli)

    def _build(
        self, engine: Engine, job: Job, info: dict[str, Any], then: Callable[[Image, IO[str]], None] | None = None
    ) -> Image | Outcome:
        """The run image on ``engine``, built unless it is there (with BuildKit where the engine's
        machine has it), logged to build.log (``then``: more work on it there, e.g. a push); a failed
        build is a failed run that says so."""
        ctx = buildctx.make(self.config)
        info["context_hash"] = ctx.digest
        if engine.product:
            info["docker"] = engine.product  # which Docker the socket found there belongs to
        name, dockerfile = self.config.image_name, self.config.project.dockerfile
        tag = image_tag(name, ctx)
        try:
            with open(job.run_dir / BUILD_LOG_NAME, "a", encoding="utf-8") as log, _one_build(engine, tag, job, log):
                image = engine.find_image(tag)
                if image is not None:
                    log.write(f"image {tag} is already on {engine.label}: no build\n")
                else:
                    job.phase(f"building on {engine.label}")
                    info["builder"] = self._build_here(engine, ctx, name, dockerfile, log)
                    image = engine.built(tag)
                if then is not None:
                    then(image, log)
        except BuildFailed as exc:
            engine.close()
            if self.rides_out_loss and not self.answers():  # the build did not fail: the Mini went away under it
                raise ssh.Unreachable(f"the build's connection to {engine.label} dropped: {exc}") from exc
            return Outcome("failed", {"cell": None, "ename": "BuildError", "evalue": f"{exc} (see build.log)"}, info)
        return image

    def _build_here(self, engine: Engine, ctx: buildctx.BuildContext, name: str, dockerfile: str, log: IO[str]) -> str:
        """Build with BuildKit, or the classic builder saying why; which one built."""
        tag = image_tag(name, ctx)
        size = f"{ctx.files} files, {ctx.size} bytes of context"
        builder = self._builder(engine)
        text = (self.config.code_root / dockerfile).read_text(errors="replace")
        base = self._base(engine, name, text)
        args, labels = ({depbase.BASE_ARG: base.text}, {depbase.LABEL_BASE: base.text}) if base else ({}, {})
        where = f"{engine.label} ({engine.product})" if engine.product else engine.label
        if not isinstance(builder, buildkit.Builder) and needs_buildkit(text):
            # no build is tried: the classic builder would only reject RUN --mount
            why = (
                f"this Dockerfile's RUN --mount needs BuildKit: {builder}"
                if isinstance(builder, buildkit.MissingBuildx)
                else f"this Dockerfile's RUN --mount needs BuildKit, not used because {builder}"
            )
            log.write(f"not building {tag} on {where}: {why}\n")
            raise BuildFailed(why)
        if isinstance(builder, buildkit.Builder):
            log.write(f"building {tag} on {where} with {builder.describe()} ({size})\n")
            log.write(f"{base.note}\n" if base else "")
            self._pull_bases(engine, text, log)
            buildkit.build(builder, gzip.compress(ctx.data, 6), tag, {**image_labels(name, ctx), **labels}, dockerfile, log, args)  # fmt: skip
            return "buildkit"
        log.write(f"building {tag} on {where} with the classic builder ({size}): {builder}\n")
        log.write(f"{base.note}\n" if base else "")
        engine.build(ctx, name, dockerfile, log, args, labels)
        return "classic"

    @staticmethod
    def _pull_bases(engine: Engine, dockerfile_text: str, log: IO[str]) -> None:
        """The base images the engine lacks, pulled through its API: no credential helper of the
        CLI's is asked (Docker Desktop's cannot reach the keychain from an ssh session)."""
        for base in buildctx.base_images(dockerfile_text):
            if "$" in base or engine.image_exists(base):
                continue
            log.write(f"pulling {base} on {engine.label} (through the engine)\n")
            log.flush()
            try:
                engine.pull(base)
            except Mm4Error as exc:
                raise BuildFailed(f"could not pull {base} on {engine.label}: {exc}") from None

    def _dockerfile_text(self) -> str:
        path = self.config.root / self.config.project.dockerfile
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def _base(self, engine: Engine, name: str, dockerfile_text: str) -> depbase.Base | None:
        """The dependency base when the Dockerfile takes one (``remote/depbase``)."""
        if not depbase.declared(dockerfile_text):
            return None
        path = self.config.code_root / "requirements.txt"
        requirements = path.read_text(errors="replace") if path.is_file() else ""
        return depbase.choose(requirements, engine.newest_label(name, depbase.LABEL_BASE), engine.label)

    def _doctor_machine(self, report: Checkup, target: ssh.Target) -> bool:
        """The engine's machine: its socket found, kept awake, the copies of earlier results there."""
        if not self._doctor_socket(report, target):
            return False
        check_awake(report, target)
        check_copies(report, target, self.config, self.settings.workdir or "mm4watch")
        return True

    def _doctor_socket(self, report: Checkup, target: ssh.Target) -> bool:
        """The engine's socket on the Mini: the one set, or the one found there (and which Docker it is)."""
        from ..remote import docker_products

        if self.settings.socket:
            found = (
                ssh.run(target, f"test -S {quote(self.settings.socket)} && echo yes || true").stdout.decode().strip()
            )
            if found == "yes":
                report.ok(
                    "docker socket", f"{self.settings.socket} ({docker_products.product_of(self.settings.socket)})"
                )
                return True
            seen = docker_products.discover(target)
            report.fail(
                "docker socket",
                f"no socket at {self.settings.socket} on {target.label}",
                f'set socket = "{seen.socket}" under [executors.{self.settings.name}] ({seen.product} is there), or leave '
                "socket out: mm4watch finds it"
                if seen.socket
                else "start Docker on that machine, logged in as that user (Docker Desktop, OrbStack, colima, Rancher "
                'Desktop), or set socket = "/path/to/docker.sock"',
            )
            return False
        seen = docker_products.discover(target)
        if seen.socket is None:
            report.fail(
                "docker socket",
                f"none on {target.label} (looked at {seen.looked()})",
                "start Docker there, logged in as that user (Docker Desktop, OrbStack, colima, Rancher Desktop), "
                'or set socket = "/path/to/docker.sock"',
            )
            return False
        others = [s for s in seen.sockets if s != seen.socket]
        also = f"; also there: {', '.join(others)}" if others else ""
        report.ok("docker socket", f"{seen.product}: {seen.socket}{also}")
        return True

    def doctor(self, report: Checkup) -> None:
        """ssh, the engine's socket, the engine, BuildKit there, the Dockerfile's base images, free disk."""
        host = self.settings.host or ""
        engine = self._doctor_reach(report, "engine", self._doctor_machine if host.startswith("ssh://") else None)
        if engine is None:
            return
        with engine:
            about = engine.describe()
            info = engine.info()
            report.ok(
                "engine",
                f"Docker {about['server_version']} (API {about['api_version']}), "
                f"{about['os']}/{about['arch']}, {info.get('NCPU')} CPUs, {info.get('MemTotal', 0) / 2**30:.1f} GiB",
            )
            builder = self._builder(engine)
            if isinstance(builder, buildkit.Builder):
                report.ok("builder", builder.describe())
            elif isinstance(builder, buildkit.MissingBuildx) and needs_buildkit(self._dockerfile_text()):
                from ..remote import docker_products

                report.fail(
                    "builder",
                    f"{builder.split('. Docker Desktop')[0]}; this project's Dockerfile uses RUN --mount",
                    docker_products.BUILDX_FIX,
                )
            else:
                report.warn(
                    "builder",
                    f"the classic builder builds (no RUN --mount cache, every changed step in full): {builder}",
                )
            dockerfile = self.config.root / self.config.project.dockerfile
            if not dockerfile.is_file():
                report.fail("Dockerfile", f"none at {dockerfile}", "add one (see README.md, 'Executors')")
                return
            bases = buildctx.base_images(dockerfile.read_text(encoding="utf-8"))
            for base in bases:
                if engine.image_exists(base):
                    report.ok("base image", f"{base} is on the engine")
                else:
                    report.warn(
                        "base image",
                        f"{base} is not on the engine yet: the first build pulls it (needs internet there)",
                    )
            probe = next((b for b in bases if engine.image_exists(b)), None)
            if probe:
                out = engine.run_probe(probe, ["df", "-Pk", "/"])
                free_gb = int(out.splitlines()[-1].split()[3]) / 2**20
                if free_gb < MIN_FREE_GB:
                    report.fail(
                        "free disk",
                        f"{free_gb:.1f} GiB for images and containers",
                        f"free space on the engine (mm4watch gc {self.settings.name}; docker system prune)",
                    )
                else:
                    report.ok("free disk", f"{free_gb:.1f} GiB for images and containers")


def docker_time(text: str) -> float | None:
    """Docker's RFC 3339 time with nanoseconds (``2026-12-04T05:31:03.123456789Z``) as a timestamp."""
    from datetime import datetime

    found = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)", text or "")
    if not found or found.group(1).startswith("0001"):
        return None
    zone = "+00:00" if found.group(2) == "Z" else found.group(2)
    return datetime.fromisoformat(found.group(1) + zone).timestamp()


def needs_buildkit(dockerfile_text: str) -> bool:
    """Whether the classic builder would reject this Dockerfile (``RUN --mount``)."""
    return re.search(r"(?im)^\s*RUN\s+--mount", dockerfile_text) is not None


@contextmanager
def _one_build(engine: Engine, tag: str, job: Job, log: IO[str]) -> Iterator[None]:
    """Runs of one image on one engine take turns to look for it, build it and push it (a lock
    this machine's processes share): two runs started together build it once, and the second
    finds it there; two pushes of the same new layers at once can make a registry answer 500."""
    import fcntl

    with open(fsutil.host_lock("build", f"{engine.endpoint}\0{tag}"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            job.phase(f"waiting for another run's build of {tag}")
            began = time.monotonic()
            fcntl.flock(lock, fcntl.LOCK_EX)
            log.write(f"another run was building {tag} on {engine.label}: waited {time.monotonic() - began:.1f} s\n")
        yield
