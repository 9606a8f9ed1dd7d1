"""A native run's environment on the Mini: a venv per hash of requirements.txt and the
interpreter's version, reused while both hold, built there by the far side (``far.venvs``: uv,
installed once there with one cache for every project, or else pip), the newest
``keep_environments`` kept (pinned ones never pruned under a run); and the uv cache trimmed by ``gc``."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from ..core.errors import Mm4Error
from ..core.requirements import plain_lines
from ..results.records import BUILD_LOG_NAME
from . import Job

if TYPE_CHECKING:
    from .native import NativeExecutor


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
    """The Mini's one uv cache: what no environment uses pruned, then all of it cleaned when still
    past ``uv_cache_max`` (environments keep their files: hard links, clones)."""
    home = ex._sh("cd && pwd").strip()
    tools = f"{home}/{ex.settings.workdir or 'mm4watch'}"
    said = ex._there(
        ex._far_side(f"{home}/{ex.base}"), "uv-gc", tools=tools, bound=ex.settings.uv_cache_max, timeout=600
    )
    if not said["cache"]:
        return f"no uv cache on {ex.target.label} (environments there are built with pip)"
    before, pruned, after = said["before"], said["pruned"], said["after"]
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
    lib = f"{base}/lib"
    # pinned first: a run names its environment in its run folder (removed when it ends), and
    # pruning passes over every environment a run still there names (far.venvs.environment)
    said = ex._there(lib, "environment", base=base, key=key, keep=ex.settings.keep_environments, run=job.key)
    if said["ready"] is not None:
        log.write_text(f"environment {key} is ready on {ex.target.label}: reused\n")
        return {**said["ready"], "env_hash": key, "venv": venv}
    lines = requirement_lines(content, said.get("earlier"))  # what the newest one there was built from
    built = ex._there(
        lib, "build", base=base, key=key, timeout=1800,
        requirements=f"{base}/runs/{job.key}/code/requirements.txt" if content else "",
        lines=json.dumps(lines) if lines is not None else "",
    )  # fmt: skip
    how = built["how"]
    if how.get("meanwhile"):
        words = "by another run while this one waited for it: reused"
    elif how["uv"]:
        words = f"with uv {how['uv']} (its cache {how['cache']}, shared by every project there)"
    else:
        words = f"with pip (uv could not be installed there by {ex.python} -m pip: {how['why']})"
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"building the environment {key} on {ex.target.label} ({version.split()[0]}) {words}\n")
        fh.write(built["log"])
    if "failed" in built:
        raise Mm4Error(f"the environment for requirements.txt could not be built on {ex.target.label}: "
                       f"{built['failed']} (build.log in the run folder has the rest)")  # fmt: skip
    return {**built["ready"], "env_hash": key, "venv": venv}
