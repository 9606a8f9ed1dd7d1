"""A native run's environment on the Mini: a venv per hash of requirements.txt and the
interpreter's version, reused while both hold, built with uv (installed once there, one cache for
every project) or else pip, the newest ``keep_environments`` kept (pinned ones never pruned under a
run: ``far.there.environment``); and the uv cache trimmed by ``gc``."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from ..core.names import join, quote
from ..core.requirements import plain_lines
from ..results.records import BUILD_LOG_NAME
from . import Job

if TYPE_CHECKING:
    from .native import NativeExecutor


UV_CACHE = "uv-cache"  # under <workdir> on the Mini: one cache for every environment of every project


SYSTEM_CERTS = ("UV_SYSTEM_CERTS=1", "UV_NATIVE_TLS=1")  # the system's certificates (the keychain on a Mac); both names


ENV_PROBE = (
    "import json, platform, sys\n"
    "try:\n    import torch\n    mps = bool(torch.backends.mps.is_available())\nexcept Exception:\n    mps = None\n"
    "print(json.dumps({'python': sys.version.split()[0], 'platform': platform.platform(), 'mps': mps}))\n"
)


def requirement_lines(content: bytes, previous: str | None) -> tuple[list[str], list[str]] | None:
    """The requirement lines of ``content``: those ``previous`` (an earlier requirements.txt) had too,
    and the added ones; None when there is no earlier one or a line is more than a name and a
    version (an option, a URL, a path): uv then resolves everything on the index."""
    if previous is None:
        return None
    now, before = plain_lines(content.decode(errors="replace")), plain_lines(previous)
    if now is None or before is None:
        return None
    return [line for line in now if line in before], [line for line in now if line not in before]


def gc_uv_cache(ex: NativeExecutor) -> str:
    """The Mini's one uv cache: what no environment uses pruned (``uv cache prune``), then all of it
    cleaned when still past ``uv_cache_max`` (environments keep their files: hard links, clones)."""
    tools = f"{ex.settings.workdir or 'mm4watch'}"
    uv, cache = quote(f"{tools}/tools/uv"), quote(f"{tools}/{UV_CACHE}")
    size = f"du -sk {cache} | cut -f1"
    out = ex._sh(
        f"cd && if test -x {uv} && test -d {cache}; then "
        f"b=$({size}); env UV_CACHE_DIR={cache} {uv} cache prune -q >/dev/null 2>&1; a=$({size}); "
        f"if [ $a -gt {ex.settings.uv_cache_max // 1024} ]; then env UV_CACHE_DIR={cache} {uv} cache clean -q "
        f">/dev/null 2>&1; fi; echo $b $a $({size}); fi",
        timeout=600,
    ).split()
    if len(out) != 3:
        return f"no uv cache on {ex.target.label} (environments there are built with pip)"
    before, pruned, after = (int(x) * 1024 for x in out)
    cleaned = " then emptied, being past the bound," if after < pruned else ""
    return (
        f"uv cache on {ex.target.label}: {before / 1e6:.1f} MB, {pruned / 1e6:.1f} MB after pruning what no "
        f"environment uses,{cleaned} {after / 1e6:.1f} MB now (at most {ex.settings.uv_cache_max / 1e6:.0f} MB: "
        "uv_cache_max)"
    )


def environment(ex: NativeExecutor, base: str, version: str, job: Job) -> dict[str, Any]:
    """The venv for this requirements.txt and interpreter: reused, or built now (with uv, else pip)."""
    requirements = ex.config.code_root / "requirements.txt"
    content = requirements.read_bytes() if requirements.exists() else b""
    key = hashlib.sha256(content + b"\0" + version.encode()).hexdigest()[:16]
    venv = f"{base}/venvs/{key}"
    log = job.run_dir / BUILD_LOG_NAME
    # pinned first: a run names its environment in its run folder (removed when it ends), and
    # pruning passes over every environment a run still there names (far.there.environment)
    said = json.loads(
        ex._there(f"{base}/lib", "environment", base=base, key=key, keep=ex.settings.keep_environments, run=job.key)
    )
    if said["ready"] is not None:
        log.write_text(f"environment {key} is ready on {ex.target.label}: reused\n")
        return {**said["ready"], "env_hash": key, "venv": venv}
    previous = said.get("earlier")  # what the newest environment still there was built from
    tools = base.rsplit("/", 1)[0]  # <workdir>: shared by every project on that machine
    uv, why = find_uv(ex, tools)
    how = (
        f"with uv {uv[1]} (its cache {tools}/{UV_CACHE}, shared by every project there)" if uv else f"with pip ({why})"
    )
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"building the environment {key} on {ex.target.label} ({version.split()[0]}) {how}\n")
    req = ["-r", f"{base}/runs/{job.key}/code/requirements.txt"] if content else []
    vpy = f"{venv}/bin/python"
    if uv:
        make = uv_make(ex, uv[0], tools, venv, req, requirement_lines(content, previous))
    else:
        make = (
            f"{join([ex.python, '-m', 'venv', venv])} && "
            f"{join([vpy, '-m', 'pip', 'install', '-q', '--disable-pip-version-check', 'papermill', 'ipykernel', *req])} 2>&1"
        )
    keep_in = f"cp {quote(f'{base}/runs/{job.key}/code/requirements.txt')} " if content else ": > "
    # built in place (a venv cannot move); .ready marks it whole, so a half-built one is redone
    out = ex._sh(
        f"{join(['rm', '-rf', venv])} && {make} && {keep_in}{quote(venv + '/requirements.in')} && "
        f"{join([vpy, '-c', ENV_PROBE])} > {quote(venv + '/env.json')} && touch {quote(venv + '/.ready')} && "
        f"cat {quote(venv + '/env.json')}",
        timeout=1800,
    )
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(out)
    ready = out.strip().splitlines()[-1]
    return {**json.loads(ready), "env_hash": key, "venv": venv}


def uv_make(
    ex: NativeExecutor, uv: str, tools: str, venv: str, req: list[str], lines: tuple[list[str], list[str]] | None
) -> str:
    """The shell that makes and fills ``venv`` with uv. With an earlier environment of this project
    on the Mini (``lines``: the requirement lines it had too, and the added ones), what it had
    comes from the uv cache without asking the index (its versions kept, as ``pip install`` into
    an existing venv keeps them), then the added lines from the index; uv resolves everything on
    the index when the cache cannot serve the first part."""
    env = [
        "env",
        f"UV_CACHE_DIR={tools}/{UV_CACHE}",
        "UV_PYTHON_DOWNLOADS=never",  # the configured interpreter, never one uv would fetch
        "UV_NO_PROGRESS=1",
        *SYSTEM_CERTS,
    ]
    install = [*env, uv, "pip", "install", "--python", f"{venv}/bin/python"]
    make = f"{join([*env, uv, 'venv', '-q', '--python', ex.python, venv])} && "
    everything = f"{join([*install, 'papermill', 'ipykernel', *req])} 2>&1"
    if lines is None:  # the project's first environment here, or requirements uv must read itself
        return make + everything
    kept, added = lines
    said, had = quote(venv + ".said"), quote(venv + ".had")
    then = f" && {join([*install, *added])} >> {said} 2>&1" if added else ""
    tail = f", then {', '.join(added)} from the index" if added else ""
    cached = quote(f"from the uv cache on this Mini without asking the index: what the environment before had{tail}")
    online = quote("not everything is in the uv cache: resolving on the index (uv said:")
    return make + (
        f"{{ printf '%s\\n' {' '.join(quote(line) for line in kept)} > {had}; "
        f"if {join([*install, '--offline', 'papermill', 'ipykernel', '-r'])} {had} > {said} 2>&1{then}; "
        f"then echo {cached}; cat {said}; "
        f'else echo {online} "$(tail -n 1 {said}))"; {everything}; fi; }}; r=$?; rm -f {said} {had}; test $r = 0'
    )


def find_uv(ex: NativeExecutor, tools: str) -> tuple[tuple[str, str] | None, str]:
    """uv on that machine, installed once from PyPI by the configured interpreter into
    ``<workdir>/tools/uv`` (by a throwaway venv's pip): (path, version), or None and why not
    (pip builds then)."""
    uv = f"{tools}/tools/uv"
    staging = quote(f"{tools}/tools/.uv-") + "$$"  # its own per process; the binary then moved into place
    # a throwaway venv's pip: never "externally managed" (PEP 668, Homebrew's Python), on any pip version
    install = (
        f"mkdir -p {quote(tools + '/tools')} && s={staging} && rm -rf $s && mkdir $s && "
        f"{join([ex.python, '-m', 'venv'])} $s/v >$s.log 2>&1 && $s/v/bin/python -m pip install -q "
        f"--disable-pip-version-check uv >>$s.log 2>&1 && mv $s/v/bin/uv {quote(uv)}; "
        f"r=$?; tail -3 $s.log 2>/dev/null | sed 's/^/uv-install: /'; rm -rf $s $s.log; test $r = 0"
    )
    out = ex._sh(
        f"if {quote(uv)} --version >/dev/null 2>&1; then true; else {install}; fi; "
        f"{quote(uv)} --version 2>/dev/null || true",
        timeout=600,
    )
    said = [line.strip() for line in out.splitlines() if line.strip()]
    version = next((line.split()[1] for line in said if line.startswith("uv ") and len(line.split()) > 1), None)
    if version:
        return (uv, version), ""
    detail = "; ".join(line.removeprefix("uv-install: ") for line in said if line.startswith("uv-install: "))
    return None, f"uv could not be installed there by {ex.python} -m pip" + (f": {detail}" if detail else "")
