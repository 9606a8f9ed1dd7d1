"""mm4watch doctor [EXECUTOR]: check, step by step, that an executor can run notebooks.

Each check prints ok or FAIL with what to do; later checks that depend on a
failed one are skipped. Exit 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core import config
from ..core.config import Config, DockerConfig, NativeConfig, SwarmConfig
from ..core.errors import EXIT_NOTEBOOK_FAILED, EXIT_OK, Mm4Error
from ..core.names import join, quote
from ..executors.base import FAR_SIDE_PYTHON
from ..remote import awake, ssh
from ..run import buildctx

MIN_FREE_GB = 10
INSECURE_WHERE = (
    "Docker Desktop: Settings > Docker Engine; OrbStack: Settings > Docker; colima: `colima start --edit`; "
    "Linux: /etc/docker/daemon.json"
)


@dataclass
class Report:
    failed: int = 0

    def ok(self, what: str, detail: str = "") -> None:
        print(f"ok    {what}" + (f": {detail}" if detail else ""))

    def warn(self, what: str, detail: str) -> None:
        print(f"warn  {what}: {detail}")

    def fail(self, what: str, detail: str, fix: str) -> None:
        self.failed += 1
        print(f"FAIL  {what}: {detail}\n      fix: {fix}")

    def check(self, what: str, step: Callable[[], str], fix: str) -> bool:
        try:
            self.ok(what, step())
            return True
        except Mm4Error as exc:
            self.fail(what, str(exc), fix)
            return False


def main(args: argparse.Namespace) -> int:
    cfg = config.load()
    exec_cfg = cfg.executor(args.executor)
    print(f"executor {exec_cfg.name} ({exec_cfg.type})" + (f" from {cfg.file}" if cfg.file else " (defaults)"))
    report = Report()
    if isinstance(exec_cfg, SwarmConfig):
        _swarm(report, cfg, exec_cfg)
    elif isinstance(exec_cfg, DockerConfig):
        _docker(report, cfg, exec_cfg)
    elif isinstance(exec_cfg, NativeConfig):
        _native(report, exec_cfg)
    else:
        _local(report)
    return EXIT_OK if report.failed == 0 else EXIT_NOTEBOOK_FAILED


def _local(report: Report) -> None:
    report.ok("python", sys.version.split()[0])
    for module in ("papermill", "ipykernel"):
        if importlib.util.find_spec(module) is None:
            report.fail(module, "not installed", f"pip install {module}")
        else:
            report.ok(module, "installed")


def _ssh(report: Report, target: ssh.Target) -> bool:
    def reach() -> str:
        t0 = time.monotonic()
        ssh.run(target, "true", timeout=20)
        return f"{target.label} answers in {time.monotonic() - t0:.2f}s"

    return report.check(
        "ssh",
        reach,
        f"make `{target.hint}` work without a prompt: a key in ssh-agent, "
        "or Host/User/Port/IdentityFile in ~/.ssh/config (or ssh_options in mm4.toml)",
    )


def _awake(report: Report, target: ssh.Target) -> None:
    held = ssh.run(target, f"test -x {awake.CAFFEINATE} && echo yes || true", timeout=30).stdout.decode().strip()
    if held == "yes":
        report.ok("awake", f"{awake.CAFFEINATE} holds off idle sleep while a run is there")
    else:
        report.warn("awake", f"no {awake.CAFFEINATE} there (not a Mac?): nothing keeps it from sleeping mid-run")


def _native(report: Report, exec_cfg: NativeConfig) -> None:
    target = ssh.Target.parse(exec_cfg.host or "", exec_cfg.ssh_options)
    python = exec_cfg.python or "python3"
    if not _ssh(report, target):
        return

    lowest = ".".join(map(str, FAR_SIDE_PYTHON))
    newer = (
        f'a newer Python on that machine, and python = "/absolute/path" under [executors.{exec_cfg.name}] '
        "(ssh's PATH there is /usr/bin:/bin:/usr/sbin:/sbin): Homebrew's `brew install python@3.12` gives "
        "/opt/homebrew/bin/python3.12, `uv python install 3.12` one under ~/.local/share/uv/python"
    )

    def interpreter() -> str:
        probe = "import sys, platform; print(sys.version_info[0], sys.version_info[1], sys.version.split()[0], sys.executable, platform.platform())"
        out = ssh.run(target, join([python, "-c", probe]), timeout=30).stdout.decode().split()
        if len(out) < 5:
            raise Mm4Error(f"{python} gave no version: {' '.join(out)!r}")
        if (int(out[0]), int(out[1])) < FAR_SIDE_PYTHON:
            raise Mm4Error(f"{python} is Python {out[2]} ({out[3]}); runs need {lowest} or newer")
        return f"{out[2]} ({out[3]}, {out[4]}): runs use it"

    if not report.check(
        "python",
        interpreter,
        f"{newer}. Not found at all on a fresh Mac: /usr/bin/python3 needs the Command Line Tools "
        "(`xcode-select --install`), or use one of those",
    ):
        return

    def venv() -> str:
        ssh.run(target, f"d=$(mktemp -d) && {quote(python)} -m venv --without-pip $d/v && rm -rf $d", timeout=60)
        return "can create virtual environments"

    report.check("venv", venv, f"{python} lacks the venv module: {newer} (Debian: apt install python3-venv)")
    _awake(report, target)
    workdir = quote(exec_cfg.workdir or "mm4watch")
    out = ssh.run(target, f"mkdir -p {workdir} && df -Pk {workdir} | tail -1", timeout=30).stdout.decode().split()
    free_gb = int(out[3]) / 2**20 if len(out) > 3 else 0.0
    if free_gb < MIN_FREE_GB:
        report.fail(
            "free disk", f"{free_gb:.1f} GiB under {exec_cfg.workdir or '~/mm4watch'}", "free space on that machine"
        )
    else:
        report.ok("free disk", f"{free_gb:.1f} GiB under {exec_cfg.workdir or '~/mm4watch'}")


def _docker(report: Report, cfg: Config, exec_cfg: DockerConfig) -> None:
    from ..remote.docker_engine import Engine

    host = exec_cfg.host or ""
    if host.startswith("ssh://"):
        target = ssh.Target.parse(host, exec_cfg.ssh_options)
        if not _ssh(report, target):
            return
        socket = quote(exec_cfg.socket)
        found = ssh.run(target, f"test -S {socket} && echo yes || true").stdout.decode().strip()
        if found != "yes":
            hint = (
                ssh.run(
                    target,
                    "PATH=$PATH:/usr/local/bin:/opt/homebrew/bin; docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null || true",
                )
                .stdout.decode()
                .strip()
            )
            report.fail(
                "docker socket",
                f"no socket at {exec_cfg.socket} on {target.label}",
                (
                    f'set socket = "{hint.removeprefix("unix://")}" under [executors.{exec_cfg.name}]'
                    if hint.startswith("unix://")
                    else "start Docker on that machine (Docker Desktop: enable 'Allow the default Docker socket'), "
                    'or set socket = "/path/to/docker.sock"'
                ),
            )
            return
        report.ok("docker socket", exec_cfg.socket)
        cli = ssh.run(target, "command -v docker || true").stdout.decode().strip()
        if not cli:
            report.warn(
                "docker on PATH",
                "non-interactive ssh does not find the docker command there (mm4watch does not need it; "
                "your own `docker -H ssh://...` does): add `export PATH=/usr/local/bin:/opt/homebrew/bin:$PATH` "
                "to ~/.zshenv on that machine",
            )
        else:
            report.ok("docker on PATH", cli)
        _awake(report, target)
    try:
        engine = Engine(exec_cfg).open()
    except Mm4Error as exc:
        report.fail("engine", str(exc), "start Docker on that machine, or fix host/context in mm4.toml")
        return
    with engine:
        about = engine.describe()
        info = engine.info()
        report.ok(
            "engine",
            f"Docker {about['server_version']} (API {about['api_version']}), "
            f"{about['os']}/{about['arch']}, {info.get('NCPU')} CPUs, {info.get('MemTotal', 0) / 2**30:.1f} GiB",
        )
        dockerfile = cfg.root / cfg.project.dockerfile
        if not dockerfile.is_file():
            report.fail("Dockerfile", f"none at {dockerfile}", "add one (see README.md, 'Executors')")
            return
        bases = buildctx.base_images(dockerfile.read_text(encoding="utf-8"))
        for base in bases:
            if engine.image_exists(base):
                report.ok("base image", f"{base} is on the engine")
            else:
                report.warn(
                    "base image", f"{base} is not on the engine yet: the first build pulls it (needs internet there)"
                )
        probe = next((b for b in bases if engine.image_exists(b)), None)
        if probe:
            out = engine.run_probe(probe, ["df", "-Pk", "/"])
            free_gb = int(out.splitlines()[-1].split()[3]) / 2**20
            if free_gb < MIN_FREE_GB:
                report.fail(
                    "free disk",
                    f"{free_gb:.1f} GiB for images and containers",
                    f"free space on the engine (mm4watch gc {exec_cfg.name}; docker system prune)",
                )
            else:
                report.ok("free disk", f"{free_gb:.1f} GiB for images and containers")


def _swarm(report: Report, cfg: Config, exec_cfg: SwarmConfig) -> None:
    """The manager, each node (state, availability, arch, cpus, memory), the registry and results from each."""
    from ..executors.swarm import node_engine, node_target, vm_node
    from ..remote.docker_engine import Engine

    manager_target = ssh.Target.parse(exec_cfg.host or "", exec_cfg.ssh_options)
    if not _ssh(report, manager_target):
        return
    try:
        manager = Engine(exec_cfg).open()
    except Mm4Error as exc:
        report.fail("manager", str(exc), "start Docker on that machine, or fix host in mm4.toml")
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
        registry = exec_cfg.registry
        probe = f"{registry}/mm4-doctor-probe:1"
        pushed = True
        try:
            import io

            some = manager.some_image()
            if some is None:
                raise Mm4Error("the manager has no image to push as a probe; run once, or `docker pull` one there")
            manager.push(some, probe, io.StringIO())
            report.ok("registry", f"the manager pushes to {registry}")
        except Exception as exc:
            pushed = False
            report.fail(
                "registry",
                f"the manager cannot push to {registry}: {exc}",
                f'start a registry at {registry} (README: "A pool of machines"), and list it under '
                f'"insecure-registries" of every node\'s engine when it has no TLS ({INSECURE_WHERE})',
            )
        ready = 0
        for node in nodes:
            desc = node.get("Description", {})
            name = str(desc.get("Hostname"))
            state = node.get("Status", {}).get("State")
            availability = node.get("Spec", {}).get("Availability")
            res = desc.get("Resources", {})
            facts = (
                f"{state}, {availability}, {desc.get('Platform', {}).get('Architecture')}, "
                f"{res.get('NanoCPUs', 0) / 1e9:g} cpus, {res.get('MemoryBytes', 0) / 2**30:.1f} GiB, "
                f"engine {desc.get('Engine', {}).get('EngineVersion')}, at {node.get('Status', {}).get('Addr')}"
            )
            vm = vm_node(node, nodes)
            if vm:
                what = f"node {name} ({str(node.get('ID'))[:12]})"
                why = f"{facts}: looks like a Mac's Docker VM ({vm})"
                fix = (
                    "Docker Desktop, OrbStack and colima cannot join one swarm across Macs (their engines "
                    "run in VMs whose swarm ports no other machine reaches): pool Linux machines, or VMs "
                    "bridged onto the LAN; GPU notebooks on several Minis need native runs instead"
                )
                if len(nodes) > 1:
                    report.fail(what, why, fix)
                    continue
                report.warn(what, f"{why}; a swarm of this one machine works. {fix}")
            if state != "ready" or availability != "active":
                report.fail(
                    f"node {name}",
                    facts,
                    "start Docker there, or `docker node update --availability active` for a drained node",
                )
                continue
            ready += 1
            target = node_target(exec_cfg, node)
            try:
                ssh.run(target, "true", timeout=20)
            except Mm4Error as exc:
                report.fail(
                    f"node {name}",
                    f"{facts}; not reachable over ssh: {exc}",
                    f"make `{target.hint}` work (Host in ~/.ssh/config), or map it: "
                    f'nodes = {{ "{name}" = "ssh://user@address" }} under [executors.{exec_cfg.name}]',
                )
                continue
            report.ok(f"node {name}", facts)
            if pushed:
                try:
                    with Engine(node_engine(exec_cfg, node)) as engine:
                        engine.pull(probe)
                    report.ok(f"registry from {name}", f"pulls {probe}")
                except Mm4Error as exc:
                    report.fail(
                        f"registry from {name}",
                        str(exc)[-300:],
                        f'add {{"insecure-registries": ["{registry}"]}} to the engine\'s settings on {name} '
                        f"and restart Docker there, or give the registry TLS ({INSECURE_WHERE})",
                    )
            home, _, writable = (
                ssh.run(target, "cd && pwd && test -w . && echo yes", check=False, timeout=20)
                .stdout.decode()
                .strip()
                .partition("\n")
            )
            if writable == "yes":
                report.ok(f"results on {name}", f"earlier results can be kept under {home}")
            else:
                report.fail(f"results on {name}", f"{home} is not writable", "give the ssh user a writable home")
            if exec_cfg.data:
                has = ssh.run(target, f"test -d {quote(exec_cfg.data)} && echo yes", check=False).stdout.decode()
                if has.strip() == "yes":
                    report.ok(f"data on {name}", exec_cfg.data)
                else:
                    report.fail(
                        f"data on {name}",
                        f"no folder {exec_cfg.data}",
                        "every node needs data/ at the same path (rsync it there)",
                    )
        if ready == 0:
            report.fail("nodes", "no node is ready and active", "start Docker on the nodes; `docker node ls`")
