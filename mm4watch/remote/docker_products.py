"""Where a Mac's Docker keeps its socket, CLI and plugins, by product.

On a Mac the engine belongs to the logged-in account: its socket is in the home folder
(``/var/run/docker.sock`` only where the user allowed it), its CLI is off the PATH an ssh
command gets (``/usr/bin:/bin:/usr/sbin:/sbin``), and its plugins (buildx: BuildKit) sit where
that product put them. ``discover`` asks the machine once which socket answers, preferring the
one of the account's current docker context (the product the user switched to last).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.names import quote
from . import ssh


@dataclass(frozen=True)
class Product:
    name: str
    socket: str  # "$HOME/..." is the account's home on that machine
    cli_dirs: tuple[str, ...] = ()
    plugin_dirs: tuple[str, ...] = ()


# in the order they are preferred when several sockets exist and no context says which
PRODUCTS = (
    Product(
        "Docker Desktop",
        "$HOME/.docker/run/docker.sock",
        ("/usr/local/bin", "$HOME/.docker/bin", "/Applications/Docker.app/Contents/Resources/bin"),
        ("/Applications/Docker.app/Contents/Resources/cli-plugins",),
    ),
    Product("OrbStack", "$HOME/.orbstack/run/docker.sock", ("$HOME/.orbstack/bin", "/usr/local/bin")),
    Product("colima", "$HOME/.colima/default/docker.sock", ("/opt/homebrew/bin", "/usr/local/bin")),
    Product("Rancher Desktop", "$HOME/.rd/docker.sock", ("$HOME/.rd/bin",)),
    Product("the default socket", "/var/run/docker.sock"),
)

# every folder a docker CLI may be in on a Mac, in order (the first found is used)
CLI_DIRS = tuple(dict.fromkeys(d for p in PRODUCTS for d in (*p.cli_dirs, "/opt/homebrew/bin")))

# Where buildx may be, beyond the folders the CLI searches by itself: the account's own
# (``~/.docker/cli-plugins``, where Docker Desktop and OrbStack link theirs), the apps', and the
# CLI's own prefix (``<prefix>/bin/docker`` -> ``<prefix>/lib/docker/cli-plugins``: Homebrew's
# ``docker-buildx`` lands there and the CLI looks only when told to).
PLUGIN_DIRS = ("$HOME/.docker/cli-plugins", *(d for p in PRODUCTS for d in p.plugin_dirs))

BUILDX_FIX = (
    "brew install docker-buildx && mkdir -p ~/.docker/cli-plugins && "
    "ln -sfn $(brew --prefix)/lib/docker/cli-plugins/docker-buildx ~/.docker/cli-plugins/docker-buildx"
)


def product_of(socket: str, home: str = "") -> str:
    """Which product a socket path belongs to (``home``: the account's home on that machine)."""
    for product in PRODUCTS:
        path = product.socket.replace("$HOME", home) if home else product.socket
        if socket == path or (not home and socket.endswith(product.socket.removeprefix("$HOME"))):
            return product.name
    return "a socket of its own"


@dataclass(frozen=True)
class Found:
    socket: str | None  # the absolute path on that machine; None: no known socket there
    product: str
    home: str
    sockets: tuple[str, ...]  # every known socket that exists there

    def looked(self) -> str:
        return ", ".join(p.socket.replace("$HOME", "~") for p in PRODUCTS)


PROBE = (
    'echo "home $HOME"; n=0; for s in '
    + " ".join(f'"{p.socket}"' for p in PRODUCTS)
    + '; do if [ -S "$s" ]; then echo "socket $s"; n=$((n+1)); fi; done; '
    + 'if [ "$n" -gt 1 ]; then PATH="$PATH:'
    + ":".join(CLI_DIRS)
    + "\"; docker context inspect --format 'context {{.Endpoints.docker.Host}}' 2>/dev/null; fi; exit 0"
)


def discover(target: ssh.Target, timeout: float = 30) -> Found:
    """The engine socket of the account on ``target``: the current docker context's, else the first
    known one that exists (one ssh round trip)."""
    said = ssh.run(target, PROBE, timeout=timeout).stdout.decode(errors="replace")
    return parse(said)


def parse(said: str) -> Found:
    home, sockets, context = "", [], ""
    for line in said.splitlines():
        kind, _, value = line.partition(" ")
        if kind == "home":
            home = value.strip()
        elif kind == "socket":
            sockets.append(value.strip())
        elif kind == "context":
            context = value.strip().removeprefix("unix://")
    chosen = context if context in sockets else (sockets[0] if sockets else None)
    return Found(chosen, product_of(chosen, home) if chosen else "none", home, tuple(sockets))


def cli_prelude(socket: str) -> str:
    """``sh`` lines that put a Mac's CLI folders on PATH and point the CLI at ``socket``."""
    return f'PATH="$PATH:{":".join(CLI_DIRS)}"; DOCKER_HOST={quote("unix://" + socket)}; export PATH DOCKER_HOST; '


def config_lines(cli_var: str = "c") -> str:
    """``sh`` lines that write mm4watch's own docker configuration on that machine and export
    ``DOCKER_CONFIG``: the account's plugin folders, the apps' and the CLI's own prefix's (``$c``), and
    no ``credsStore``/``credHelpers`` (a keychain helper cannot be reached from an ssh session; public
    images need no credentials, and base images are pulled through the engine)."""
    dirs = [*PLUGIN_DIRS, f'$(dirname "$(dirname "${cli_var}")")/lib/docker/cli-plugins']
    listed = ",".join(f'\\"{d}\\"' for d in dirs)
    return (
        'D="$HOME/.mm4watch/docker-config"; mkdir -p "$D" && chmod 700 "$D" && '
        f'printf "{{\\"cliPluginsExtraDirs\\": [{listed}]}}\\n" >"$D/config.json.$$" && '
        'mv -f "$D/config.json.$$" "$D/config.json" && DOCKER_CONFIG="$D" && export DOCKER_CONFIG; '
    )
