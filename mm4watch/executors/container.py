"""What goes into a container, shared by every executor that runs one: the far side and the
folders a run writes to, the job (spec and notebook), the notebook's folder in the image, and
data/ and the earlier results bound read-only."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.config import Config
from ..core.runenv import ENV_OUTPUT_DIR
from . import Job
from .far_side import RESULT_DIR, job_spec, runner_digest, runner_files

if TYPE_CHECKING:
    from ..remote.docker_engine import Bind

RUN_UID = 1000  # containers never run as root


OUTPUT = "/output"  # in a container: the run's output folder


JOB = "/mm4/job"  # in a container: the spec and the notebook


LIB = "/mm4/lib"  # in a container: mm4watch's far side


@dataclass(frozen=True)
class Tar:
    data: bytes
    digest: str


def _tar(add: Callable[[tarfile.TarFile], None]) -> bytes:
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


def lib_tar() -> Tar:
    """mm4watch's far side (pure Python), and the folders a run writes to, for ``put_archive("/")``."""
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

    return Tar(_tar(add), runner_digest())


def job_tar(job: Job, root: str, workdir: str, results: str) -> bytes:
    """The run spec and the notebook; ``go`` comes last, so a waiting container sees a whole job."""
    spec = job_spec(
        job, notebook=f"{JOB}/input.ipynb", output_dir=OUTPUT, cwd=workdir, project=root, results=f"{root}/{results}"
    )
    spec["code_from_image"] = True  # the runner says when the notebook's folder there is empty

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


def notebook_dir(config: Config, root: str, job: Job) -> str:
    """The notebook's own folder inside an image whose project root is ``root``."""
    rel_cwd = job.cwd.resolve().relative_to(config.code_root).as_posix()
    return root if rel_cwd == "." else f"{root}/{rel_cwd}"


def run_as(config: Config, data: str | None, root: str, results: str | None, settings: Any) -> dict[str, Any]:
    """How every run's container runs, a single container or a swarm's task: as ``RUN_UID`` with no
    capabilities, told where its output goes, data/ and the earlier results bound read-only, within
    the executor's ``cpus`` and ``memory``."""
    return {
        "user": f"{RUN_UID}:{RUN_UID}",
        "environment": {ENV_OUTPUT_DIR: OUTPUT, "HOME": "/mm4/home", "PYTHONPATH": LIB, "PYTHONUNBUFFERED": "1"},
        "cap_drop": ["ALL"],
        "binds": read_only_binds(config, data, root, results),
        "cpus": settings.cpus,
        "memory": settings.memory,
    }


def read_only_binds(config: Config, data: str | None, root: str, results: str | None) -> list[Bind]:
    """data/ and the earlier results, where the notebook looks for them in the image, read-only."""
    from ..remote.docker_engine import Bind

    binds = []
    if data:
        binds.append(Bind(source=data, target=f"{root}/{config.project.data}"))
    if results:
        binds.append(Bind(source=results, target=f"{root}/{config.project.results}"))
    return binds
