"""BuildKit builds, by the docker CLI of the engine's own machine.

docker-py builds with the classic builder only: no ``RUN --mount=type=cache``, so a changed
``requirements.txt`` reinstalls every package. Every engine since 18.09 has BuildKit and the
docker CLI beside it speaks it, so the build runs there: ``DOCKER_BUILDKIT=1 docker build -``
(``docker buildx build --load -`` where buildx is the builder) over the shared ssh connection,
with the same deterministic build context, gzip'd, on its standard input. The image keeps its
tag (by context hash) and labels, and is built on that machine's own architecture.

The CLI runs with a configuration of mm4watch's own (``docker_products.config_lines``): the
account's plugin folders and the CLI's prefix's (Homebrew's ``docker-buildx``), no keychain
credential helper (Docker Desktop's cannot be reached from an ssh session).

``find`` says which CLI, or why BuildKit cannot be used there: a missing buildx plugin is a
``MissingBuildx`` (the run fails at once with the fix); other reasons let the classic builder
build, and build.log says why.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from typing import IO

from ..core import proc
from ..core.names import quote
from . import docker_products, ssh
from .docker_engine import BuildFailed

# where the docker CLI lives on a Mac, beyond the PATH an ssh command gets there
# (/usr/bin:/bin:/usr/sbin:/sbin): Docker Desktop, Homebrew (colima), OrbStack, Rancher Desktop
SEARCHED = docker_products.CLI_DIRS
MIN_API = (1, 39)  # Docker 18.09: the first engine with BuildKit
BUILDX_FROM = 23  # from Docker 23 on, the CLI's BuildKit is the buildx plugin


@dataclass(frozen=True)
class Machine:
    """Where the engine's CLI runs: over ssh (``target``) or on this machine (None)."""

    label: str
    socket: str  # the engine's unix socket on that machine
    target: ssh.Target | None
    product: str = ""  # Docker Desktop, colima, ... (docker_products)

    def argv(self, command: str) -> list[str]:
        if self.target is None:
            return ["/bin/sh", "-c", command]
        return [*self.target.argv(), ssh.remote_command(command)]

    def prelude(self) -> str:
        return docker_products.cli_prelude(self.socket)

    @property
    def where(self) -> str:
        return f"{self.label} ({self.product})" if self.product else self.label


class MissingBuildx(str):
    """The CLI is one whose BuildKit is the buildx plugin, and there is none: no build can work
    (the classic builder rejects ``RUN --mount``), and two commands fix it."""


@dataclass(frozen=True)
class Builder:
    machine: Machine
    cli: str
    version: str
    buildx: bool

    def describe(self) -> str:
        how = "buildx" if self.buildx else "DOCKER_BUILDKIT=1"
        return f"BuildKit ({how}, docker CLI {self.version} at {self.cli})"

    def command(self, *args: str) -> str:
        """The CLI with ``args`` as one ``sh`` command (its errors joined to its output)."""
        return (
            self.machine.prelude()
            + f"c={quote(self.cli)}; "
            + docker_products.config_lines()
            + 'DOCKER_BUILDKIT=1 exec "$c" '
            + " ".join(quote(a) for a in args)
            + " 2>&1"
        )


def find(machine: Machine, configured: str | None) -> Builder | str:
    """The docker CLI on ``machine`` that builds with BuildKit, or why there is none."""
    if configured:
        pick = f'c={quote(configured)}; [ -x "$c" ] || {{ echo missing; exit 0; }}; '
    else:
        pick = "c=$(command -v docker) || { echo none; exit 0; }; "
    probe = (
        machine.prelude()
        + pick
        + docker_products.config_lines()
        + 'echo "cli $c"; "$c" version --format "{{.Client.Version}} {{.Server.APIVersion}}" 2>&1 | tail -n 1; '
        + '"$c" buildx version >/dev/null 2>&1 && echo buildx; exit 0'
    )
    try:
        said = proc.run(machine.argv(probe), timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return f"{machine.label} did not answer within 60s"
    lines = said.stdout.decode(errors="replace").splitlines()
    if said.returncode != 0 or not lines:
        return f"could not look for a docker CLI on {machine.label}: {_last(said.stderr.decode(errors='replace'))}"
    if lines[0] == "missing":
        return f"docker_cli = {configured!r} is not an executable file on {machine.label}"
    if lines[0] == "none":
        where = ", ".join(s.replace("$HOME", "~") for s in SEARCHED)
        return f'no docker CLI on {machine.where} (on its PATH, {where}); set docker_cli = "/path/to/docker"'
    cli = lines[0].removeprefix("cli ")
    version_line = lines[1] if len(lines) > 1 else ""
    found = re.fullmatch(r"(\d+)\.\S+ (\d+)\.(\d+)", version_line.strip())
    if not found:
        return f"the docker CLI at {cli} on {machine.where} cannot reach unix://{machine.socket}: {version_line[:200]}"
    version = version_line.split()[0]
    if (int(found.group(2)), int(found.group(3))) < MIN_API:
        return f"the engine on {machine.label} speaks API {found.group(2)}.{found.group(3)}, older than BuildKit (1.39)"
    buildx = "buildx" in lines[2:]
    if not buildx and int(found.group(1)) >= BUILDX_FROM:
        return MissingBuildx(
            f"the docker CLI {version} at {cli} on {machine.where} has no buildx plugin, which is its BuildKit "
            f"(looked in ~/.docker/cli-plugins, the CLI's own lib/docker/cli-plugins and Docker Desktop's). "
            f"Docker Desktop and OrbStack ship it; with Homebrew, on that machine: {docker_products.BUILDX_FIX}"
        )
    return Builder(machine, cli, version, buildx)


def build(
    builder: Builder,
    context: bytes,
    tag: str,
    labels: dict[str, str],
    dockerfile: str,
    log: IO[str],
    build_args: dict[str, str] | None = None,
) -> None:
    """Build ``tag`` from the gzip'd tar ``context``; BuildKit's own lines go to ``log``."""
    args = ["buildx", "build", "--load"] if builder.buildx else ["build"]
    args += ["--progress=plain", "-t", tag, "-f", dockerfile]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    log.flush()
    tail: deque[str] = deque(maxlen=60)
    with proc.pipe_through(builder.machine.argv(builder.command(*args, "-"))) as process:
        assert process.stdin is not None and process.stdout is not None
        feed = threading.Thread(target=_feed, args=(process.stdin, context), name="mm4-build-context", daemon=True)
        feed.start()
        try:
            for raw in process.stdout:
                line = raw.decode(errors="replace")
                log.write(line)
                log.flush()
                tail.append(line)
            process.wait()
        except BaseException:
            process.kill()
            raise
        feed.join(5)
    if process.returncode == 255 and builder.machine.target is not None:
        raise ssh.Unreachable.over_ssh(builder.machine.target, "".join(tail))
    if process.returncode != 0:
        raise BuildFailed(_error(list(tail)))


def prune(builder: Builder, keep: int) -> str:
    """Trim the machine's BuildKit cache (cache mounts included) to ``keep`` bytes; what the CLI said."""
    command = builder.command("builder", "prune", "-f", "--keep-storage", f"{max(1, keep >> 20)}mb")
    said = proc.run(builder.machine.argv(command), timeout=600, check=False)
    text = said.stdout.decode(errors="replace")
    if said.returncode != 0:
        raise BuildFailed(f"docker builder prune on {builder.machine.label} failed: {_last(text)}")
    return _last(text) or "nothing to prune"


def _feed(sink: IO[bytes], data: bytes) -> None:
    try:
        sink.write(data)
        sink.close()
    except OSError:  # the CLI stopped reading: its output says why
        pass


def _error(lines: list[str]) -> str:
    """BuildKit's reason from its last lines (``ERROR: failed to solve: ...`` / ``error: ...``)."""
    for line in reversed(lines):
        text = line.strip()
        if re.match(r"(?i)(error|failed to solve)\b", text):
            return text[:500]
    return _last("".join(lines)) or "the build failed"


def _last(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
