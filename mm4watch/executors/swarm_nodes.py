"""A swarm's nodes: which can take a run, how each is reached (its engine, ssh), which are a Mac's
Docker VM (those cannot join one swarm across Macs), and doctor's checks of each (the registry
pushed to and pulled from, a place for earlier results, the data folder)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.errors import Mm4Error
from ..core.names import quote
from ..remote import ssh
from ..remote.docker_engine import Engine
from .docker import DockerConfig
from .engine import INSECURE_WHERE
from .upkeep import Checkup

if TYPE_CHECKING:
    from .swarm import SwarmConfig


def usable(node: dict[str, Any]) -> bool:
    return node.get("Status", {}).get("State") == "ready" and node.get("Spec", {}).get("Availability") == "active"


def node_host(settings: SwarmConfig, node: dict[str, Any]) -> str:
    """How to reach a node (as the manager describes it, ``docker node inspect``): ``nodes`` in the
    config by node ID or hostname, else ssh to the address Swarm advertises."""
    hostname = str(node.get("Description", {}).get("Hostname"))
    return (
        settings.nodes.get(str(node.get("ID")))
        or settings.nodes.get(hostname)
        or f"ssh://{node.get('Status', {}).get('Addr')}"
    )


def node_engine(settings: SwarmConfig, node: dict[str, Any]) -> DockerConfig:
    """How to reach a node's own engine."""
    return DockerConfig(
        name=f"{settings.name}/{node.get('Description', {}).get('Hostname')}",
        type="docker",
        host=node_host(settings, node),
        ssh_options=settings.ssh_options,
        socket=settings.socket,
    )


def node_target(settings: SwarmConfig, node: dict[str, Any]) -> ssh.Target:
    """The ssh target of a node."""
    return ssh.Target.parse(node_host(settings, node), settings.ssh_options)


# What Docker Desktop, OrbStack and colima give the engine in their VM on a Mac: the same hostname
# on every Mac, and an address only that Mac reaches (moby/moby#29394, #49561: no swarm across them)
VM_HOSTNAMES = ("docker-desktop", "orbstack", "colima", "lima-colima", "rancher-desktop", "lima-rancher-desktop")


VM_NETWORKS = ("192.168.65.0/24", "198.19.0.0/16", "192.168.5.0/24", "192.168.106.0/24")


def vm_node(node: dict[str, Any], nodes: list[dict[str, Any]]) -> str | None:
    """Why ``node`` looks like the engine VM of a Mac (or shares its hostname), None when it does not."""
    import ipaddress

    hostname = str(node.get("Description", {}).get("Hostname"))
    addr = str(node.get("Status", {}).get("Addr"))
    if hostname in VM_HOSTNAMES:
        return f"its hostname {hostname!r} is the one every {hostname} VM has"
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        ip = None
    for network in VM_NETWORKS:
        if ip is not None and ip in ipaddress.ip_network(network):
            return f"its address {addr} is in {network}, a Mac's Docker VM network no other machine reaches"
    if sum(1 for other in nodes if str(other.get("Description", {}).get("Hostname")) == hostname) > 1:
        return f"another node has the hostname {hostname!r} too"
    return None


def doctor_push(settings: SwarmConfig, report: Checkup, manager: Engine, probe: str) -> bool:
    """The manager pushes an image it has to the registry as ``probe``."""
    import io

    registry = settings.registry
    try:
        some = manager.some_image()
        if some is None:
            raise Mm4Error("the manager has no image to push as a probe; run once, or `docker pull` one there")
        manager.push(some, probe, io.StringIO())
        report.ok("registry", f"the manager pushes to {registry}")
        return True
    except Exception as exc:
        report.fail(
            "registry",
            f"the manager cannot push to {registry}: {exc}",
            f'start a registry at {registry} (README: "A pool of machines"), and list it under '
            f'"insecure-registries" of every node\'s engine when it has no TLS ({INSECURE_WHERE})',
        )
        return False


def doctor_node(
    settings: SwarmConfig, report: Checkup, node: dict[str, Any], nodes: list[dict[str, Any]], probe: str | None
) -> bool:
    """One node: what it is, ssh to it, the probe pulled from the registry (``probe``: pushed), a place for
    earlier results, the data folder. True when it is ready and active."""
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
            return False
        report.warn(what, f"{why}; a swarm of this one machine works. {fix}")
    if state != "ready" or availability != "active":
        report.fail(
            f"node {name}",
            facts,
            "start Docker there, or `docker node update --availability active` for a drained node",
        )
        return False
    target = node_target(settings, node)
    try:
        ssh.run(target, "true", timeout=20)
    except Mm4Error as exc:
        report.fail(
            f"node {name}",
            f"{facts}; not reachable over ssh: {exc}",
            f"make `{target.hint}` work (Host in ~/.ssh/config), or map it: "
            f'nodes = {{ "{name}" = "ssh://user@address" }} under [executors.{settings.name}]',
        )
        return True
    report.ok(f"node {name}", facts)
    if probe is not None:
        doctor_pull(settings, report, node, name, probe)
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
    if settings.data:
        has = ssh.run(target, f"test -d {quote(settings.data)} && echo yes", check=False).stdout.decode()
        if has.strip() == "yes":
            report.ok(f"data on {name}", settings.data)
        else:
            report.fail(
                f"data on {name}",
                f"no folder {settings.data}",
                "every node needs data/ at the same path (rsync it there)",
            )
    return True


def doctor_pull(settings: SwarmConfig, report: Checkup, node: dict[str, Any], name: str, probe: str) -> None:
    from ..remote.docker_engine import Engine

    try:
        with Engine(node_engine(settings, node)) as engine:
            engine.pull(probe)
        report.ok(f"registry from {name}", f"pulls {probe}")
    except Mm4Error as exc:
        report.fail(
            f"registry from {name}",
            str(exc)[-300:],
            f'add {{"insecure-registries": ["{settings.registry}"]}} to the engine\'s settings on {name} '
            f"and restart Docker there, or give the registry TLS ({INSECURE_WHERE})",
        )
