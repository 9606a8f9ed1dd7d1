"""Names are data: a run's readable id, the safe key other systems see, and shell quoting.

A run id keeps the notebook's name as the user wrote it (``Untitled 1_20261129_101500``):
it names the result folder. Everything that names the run to another system
(container and service names, labels, remote folders, pid files) uses
``run_key(run_id)`` instead: lowercase ASCII letters, digits and ``-``, at
most 51 characters, starting with a letter or digit, with a hash of the exact
id so two names that slug alike never collide. Valid as a Docker container or
service name, a label value, a DNS label and a file name on any system.

Anything that reaches a shell goes through ``quote`` or ``join`` here, once.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import unicodedata
from pathlib import Path

SLUG_MAX = 40
HASH_LEN = 10
KEY_MAX = SLUG_MAX + 1 + HASH_LEN


def slug(text: str, limit: int = SLUG_MAX) -> str:
    """``text`` in ``[a-z0-9-]``, accents folded (Ü -> u), at most ``limit`` characters; may be empty."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")[:limit].rstrip("-")


def run_stem(stem: str) -> str:
    """A notebook's name as the start of its run ids and folders: as written, but for control
    characters and line breaks (a newline splits every list of names), each one ``_``."""
    return "".join("_" if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in stem) or "_"


def run_key(run_id: str) -> str:
    """The safe, stable, collision-free form of a run id (see the module docstring)."""
    digest = hashlib.sha256(run_id.encode("utf-8", "surrogateescape")).hexdigest()[:HASH_LEN]
    return f"{slug(run_id) or 'run'}-{digest}"


def project_key(root: Path) -> str:
    """A project's one name on other machines and engines (its folder on the Mini, its images, its
    mirror of earlier results, its login service): the folder's name and a hash of its path, so two
    projects with the same folder name never share (nor clean up) anything."""
    digest = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{slug(root.name) or 'project'}-{digest}"


def quote(value: object) -> str:
    """One word for a POSIX shell, whatever ``value`` holds."""
    return shlex.quote(str(value))


def join(argv: list[str] | tuple[str, ...]) -> str:
    """An argument list as one shell command line, every word quoted."""
    return shlex.join(str(a) for a in argv)


# -- one name per notebook -------------------------------------------------------------
# git reports names in NFC (core.precomposeunicode on a Mac); the watcher sees the bytes on disk, which
# may be NFD (a name typed or copied from an older volume); APFS ignores case, so a notebook typed in
# another case opens all the same. A notebook is keyed by the name as the file system stores it, in NFC.


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def stored(root: Path, rel: str) -> str:
    """``rel`` (under ``root``) as the file system stores it: each part as its folder lists it, the exact
    name when there is one, else the one entry equal to it but for case and Unicode normalisation."""
    out: list[str] = []
    folder = root
    for part in Path(rel).parts:
        name = part
        try:
            listed = os.listdir(folder)
        except OSError:
            listed = []
        if part not in listed:
            alike = [entry for entry in listed if _fold(entry) == _fold(part)]
            if len(alike) == 1:
                name = alike[0]
        out.append(name)
        folder = folder / name
    return "/".join(out)


def notebook_key(root: Path, rel: str) -> str:
    """The one name a notebook is queued, recorded and listed under: as stored, then NFC."""
    return nfc(stored(root, rel))
