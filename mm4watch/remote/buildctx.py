"""The build context: what crosses the link to build the run image.

Only what the Dockerfile may need: the project minus ``.dockerignore``
matches, and never ``.git/``, ``.mm4/``, the results or the data folder.
Notebooks (``*.ipynb``) are left out too: each run sends the one notebook it
executes, so editing a notebook never changes the image. The tar is
deterministic (sorted, zero timestamps and owners), and its sha256 names the
image, so an unchanged project finds its image without building.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..core.config import Config
from ..core.errors import ConfigError
from ..core.fsutil import NEVER_SHIPPED, is_dropping


@dataclass(frozen=True)
class BuildContext:
    data: bytes  # the tar
    digest: str  # sha256 of the tar
    files: int

    @property
    def size(self) -> int:
        return len(self.data)


def _pattern(text: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over '/'-separated relative paths."""
    text = text.strip().lstrip("/")
    if text.startswith("./"):
        text = text[2:]
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif text.startswith("**", i):
            out += ".*"
            i += 2
        elif text[i] == "*":
            out += "[^/]*"
            i += 1
        elif text[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(text[i])
            i += 1
    # a pattern that names a folder also covers everything inside it
    return re.compile(out.rstrip("/") + "(?:/.*)?$")


def read_dockerignore(root: Path) -> list[tuple[bool, re.Pattern[str]]]:
    path = root / ".dockerignore"
    if not path.exists():
        return []
    rules = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern(line[1:] if negate else line)))
    return rules


def is_ignored(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    ignored = False
    for negate, pattern in rules:
        if pattern.match(rel):
            ignored = not negate
    return ignored


def make(config: Config, *, image: bool = True) -> BuildContext:
    """The project's files a run gets, as a tar: for an image (``image``: its Dockerfile must be
    there and is always in) or as the code a native run copies (the same ``.dockerignore`` rules)."""
    root = config.code_root
    if image and not (root / config.project.dockerfile).is_file():
        raise ConfigError(
            f"no {config.project.dockerfile} in {root}: a container executor builds the run image from it. "
            "Start from the one in mm4watch's README (python:3.11-slim, papermill, ipykernel, requirements.txt)"
        )
    # never left out: the Dockerfile of an image; requirements.txt, which a native run's venv is built from
    keep = {config.project.dockerfile} if image else {"requirements.txt"}
    buffer = io.BytesIO()
    count = 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, path in _shipped(config, root, keep):
            if path is None:  # folders too, so a folder of notebooks exists in the image when empty
                info = tarfile.TarInfo(rel)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                tar.addfile(info)
                continue
            info = tarfile.TarInfo(rel)
            info.size = path.stat().st_size
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.mtime = 0
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
            count += 1
    data = buffer.getvalue()
    return BuildContext(data=data, digest=hashlib.sha256(data).hexdigest(), files=count)


def _shipped(config: Config, root: Path, keep: set[str]) -> Iterator[tuple[str, Path | None]]:
    """(relative path, file) of what is shipped, sorted; a folder comes as (path, None) before its files."""
    rules = read_dockerignore(root)
    skip_top = {config.project.results, config.project.data}
    # an ignored folder is skipped whole unless a '!' rule may bring back something inside
    can_prune = not any(negate for negate, _ in rules)
    for folder, dirs, files in os.walk(root):
        rel_folder = Path(folder).relative_to(root).as_posix()
        rel_folder = "" if rel_folder == "." else rel_folder
        kept = []
        for name in sorted(dirs):
            rel = f"{rel_folder}/{name}" if rel_folder else name
            if name in NEVER_SHIPPED or rel in skip_top or (can_prune and is_ignored(rel, rules)):
                continue
            if os.path.islink(os.path.join(folder, name)):
                continue
            kept.append(name)
        dirs[:] = kept
        if rel_folder:
            yield rel_folder, None
        for name in sorted(files):
            rel = f"{rel_folder}/{name}" if rel_folder else name
            if name.endswith(".ipynb") or is_dropping(name) or rel in skip_top:
                continue
            if is_ignored(rel, rules) and rel not in keep:
                continue
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            yield rel, path


def base_images(dockerfile_text: str) -> list[str]:
    """Images named in FROM lines (not earlier build stages)."""
    stages: set[str] = set()
    images = []
    for line in dockerfile_text.splitlines():
        match = re.match(r"\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            image, stage = match.group(1), match.group(2)
            if image.lower() not in stages and image.lower() != "scratch":
                images.append(image)
            if stage:
                stages.add(stage.lower())
    return images
