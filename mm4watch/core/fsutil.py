"""Atomic writes and file hashing: every state file goes through here."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half (nor without its mode)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


# What macOS writes by itself: Finder's .DS_Store in every folder it shows, AppleDouble ``._name``
# files (Apple's tar, copies to other file systems), .localized, a custom icon's "Icon\r". Never
# code, never a result: kept out of build contexts, code syncs and outputs.
MAC_DROPPINGS = (".DS_Store", ".localized", "Icon\r")


def is_dropping(name: str) -> bool:
    """A file macOS wrote by itself (``MAC_DROPPINGS``, ``._*``): a bare name, not a path."""
    return name in MAC_DROPPINGS or name.startswith("._")


# Folders of a project never sent to another machine, at any depth (the build context, the native
# executor's code sync): version control, mm4watch's state, caches and virtual environments.
NEVER_SHIPPED = (".git", ".mm4", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".venv", "venv")


def dropping_excludes() -> list[str]:
    """rsync's ``--exclude`` options for the same files, at any depth."""
    return [f"--exclude={pattern}" for pattern in (*MAC_DROPPINGS, "._*")]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_stream(
    fileobj: Any, into: Path, *, skip: frozenset[str] = frozenset(), strip_top: bool = False, log: Path | None = None
) -> None:
    """Unpack a tar stream into ``into`` as it arrives, safely.

    Only files and folders, no absolute paths, no '..' (tarfile's "data"
    filter); ``strip_top`` drops the archive's top folder (docker's archives
    name it); top-level names in ``skip`` are left out, and so are macOS's
    droppings (``is_dropping``) at any depth. A member that cannot be
    unpacked (refused by the filter, a name the file system rejects) is
    skipped, named in ``log``; the rest comes home.
    """
    import tarfile

    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            name = member.name
            while name.startswith("./"):
                name = name[2:]
            name = "" if name == "." else name.rstrip("/")
            if strip_top:
                parts = name.split("/", 1)
                if len(parts) == 1:
                    if not member.isfile():
                        continue  # the top folder itself; a single file keeps its name
                else:
                    name = parts[1]
            if not name or name.split("/", 1)[0] in skip or not (member.isfile() or member.isdir()):
                continue
            if is_dropping(name.rsplit("/", 1)[-1]):
                continue
            member.name = name
            try:
                tar.extract(member, path=into, filter="data")
            except (tarfile.FilterError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno is None:
                    raise  # not this file system's refusal: the stream broke (a connection's IOError)
                if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                    if member.isfile():  # what came of it is cut short: gone, and its room with it
                        (into / name).unlink(missing_ok=True)
                    raise  # this disk is full: nothing more comes, and the caller keeps the files where they are
                if log is not None:
                    with open(log, "a", encoding="utf-8") as fh:
                        fh.write(f"mm4watch: results: {name!r} not brought home ({exc}); the rest is\n")


def private_dir(purpose: str) -> Path:
    """``/tmp/mm4-PURPOSE-UID``: a folder of this user's own, mode 0700, made if missing. /tmp is
    everyone's (and short, for socket paths): a folder there that is not this user's, or that
    others may enter, is refused, never used."""
    from .errors import Mm4Error

    folder = Path("/tmp") / f"mm4-{purpose}-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError as exc:
        raise Mm4Error(f"cannot make {folder}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise Mm4Error(
            f"{folder} is not a folder of your own with mode 0700 (owner uid {info.st_uid}, mode "
            f"{stat.filemode(info.st_mode)}): another user could stand in for mm4watch's files there. "
            "Remove it and run again"
        )
    return folder


def host_file(purpose: str, key: str, suffix: str) -> Path:
    """A file this machine's mm4watch processes share for ``key`` (one user, any project): in this
    user's own folder (``private_dir``), named by ``purpose`` and a hash of ``key``."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return private_dir("host") / f"{purpose}-{digest}{suffix}"


def peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end of a unix socket; None where it cannot be told."""
    import struct
    import sys

    try:
        if sys.platform == "darwin":  # LOCAL_PEERCRED: struct xucred {u_int version; uid_t uid; ...}
            raw = sock.getsockopt(0, 0x001, struct.calcsize("IIh16I"))
            return int(struct.unpack_from("II", raw)[1])
        if hasattr(socket, "SO_PEERCRED"):  # struct ucred {pid_t pid; uid_t uid; gid_t gid}
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            return int(struct.unpack("3i", raw)[1])
    except OSError:
        return None
    return None


def host_lock(purpose: str, key: str) -> Path:
    """The lock file this machine's mm4watch processes share for ``key``."""
    return host_file(purpose, key, ".lock")


def remove_tree(path: Path) -> None:
    """``rm -rf``: read-only folders inside (a package's) made writable on the way."""

    def writable_then_again(function: Callable[..., Any], name: str, _: Any) -> None:
        try:
            os.chmod(os.path.dirname(name), stat.S_IRWXU)
            os.chmod(name, stat.S_IRWXU)
        except OSError:
            pass
        try:
            function(name)
        except FileNotFoundError:
            pass

    handler = "onexc" if sys.version_info >= (3, 12) else "onerror"  # onerror is deprecated from 3.12
    options: dict[str, Any] = {handler: writable_then_again}
    shutil.rmtree(path, **options)
