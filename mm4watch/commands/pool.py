"""mm4watch pool certs FOLDER: the certificates a Dask pool runs with over TLS.
mm4watch pool worker --scheduler ADDRESS --name NAME: a Mini's worker as a launchd daemon.

Made with the machine's own ``openssl`` (every Mac has one): a CA for the pool, one
certificate for the scheduler and the workers (``node``), one for this machine
(``client``), each signed by the CA. Only holders of a certificate the CA signed can
join the pool or use it; every message is encrypted. Nothing is overwritten: a
folder that holds any of them already is refused.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..core import proc
from ..core.errors import UsageError

CA = """[req]
distinguished_name = dn
prompt = no
[dn]
CN = mm4watch pool CA
[ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""
LEAF = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = DNS:{name}
"""
FILES = ("ca.pem", "ca-key.pem", "node.pem", "node-key.pem", "client.pem", "client-key.pem")


def make(folder: Path, days: int = 3650) -> list[Path]:
    """The CA and two certificates in ``folder`` (made 0700); the files, in ``FILES``' order."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    taken = [name for name in FILES if (folder / name).exists()]
    if taken:
        raise UsageError(f"{folder} already holds {', '.join(taken)}: nothing was changed (choose another folder)")
    old = os.umask(0o077)  # keys readable by their owner only
    try:
        (folder / "ca.cnf").write_text(CA)
        _openssl(folder, "req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "ca-key.pem",
                 "-out", "ca.pem", "-days", str(days), "-config", "ca.cnf", "-extensions", "ext")  # fmt: skip
        for name in ("node", "client"):
            (folder / f"{name}.ext").write_text(LEAF.format(name=f"mm4watch-{name}"))
            _openssl(folder, "req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", f"{name}-key.pem",
                     "-out", f"{name}.csr", "-subj", f"/CN=mm4watch-{name}")  # fmt: skip
            _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                     "-CAcreateserial", "-out", f"{name}.pem", "-days", str(days), "-extfile", f"{name}.ext")  # fmt: skip
            for leftover in (f"{name}.csr", f"{name}.ext"):
                (folder / leftover).unlink()
        for leftover in ("ca.cnf", "ca.srl"):
            (folder / leftover).unlink(missing_ok=True)
    finally:
        os.umask(old)
    return [folder / name for name in FILES]


def _openssl(folder: Path, *args: str) -> None:
    proc.run(["openssl", *args], cwd=folder, timeout=120)


WORKER_LABEL = "local.mm4watch.dask-worker"


def worker_job(scheduler: str, name: str, user: str, home: str, dask: str | None, tls: str | None) -> dict[str, object]:
    """A Mini's Dask worker as a LaunchDaemon run as ``user``: it starts at boot without a login, and
    launchd daemons are exempt from Local Network Privacy, which keeps a LaunchAgent off the LAN
    ("No route to host") until someone clicks Allow on a Mini nobody looks at."""
    from ..core import launchd

    dask = dask or f"{home}/dask/bin/dask"
    tls = (tls or f"{home}/tls").rstrip("/")
    argv = [dask, "worker", scheduler, "--protocol", scheduler.split("://", 1)[0]]
    if scheduler.startswith("tls://"):
        argv += ["--tls-ca-file", f"{tls}/ca.pem", "--tls-cert", f"{tls}/node.pem", "--tls-key", f"{tls}/node-key.pem"]
    # one process, one thread, one slot: one run per Mini at a time, the GPU its own
    argv += ["--nworkers", "1", "--nthreads", "1", "--resources", "mps=1", "--name", name]
    return launchd.job(
        WORKER_LABEL,
        argv,
        user=user,
        home=home,
        workdir=home,
        log=f"{home}/Library/Logs/dask-worker.log",
        keep_alive=True,
    )


def worker(args: argparse.Namespace) -> int:
    import getpass
    import plistlib
    import sys

    if not args.scheduler or not args.name:
        raise UsageError("pool worker needs --scheduler tls://HOST:8786 and --name NAME (the name nodes maps)")
    if not args.scheduler.startswith(("tls://", "tcp://")):
        raise UsageError(f"--scheduler {args.scheduler!r}: write tls://HOST:8786")
    user = args.user or getpass.getuser()
    home = (args.home or f"/Users/{user}").rstrip("/")
    job = worker_job(args.scheduler, args.name, user, home, args.dask, args.tls)
    sys.stdout.write(plistlib.dumps(job, sort_keys=False).decode())
    target = f"/Library/LaunchDaemons/{WORKER_LABEL}.plist"
    print(
        f"""
On the Mini (as {user}, who needs to be an administrator once): save the above as {WORKER_LABEL}.plist, then
  mkdir -p {home}/Library/Logs
  sudo install -m 644 -o root -g wheel {WORKER_LABEL}.plist {target}
  sudo launchctl bootstrap system {target}
It starts at every boot, logged in or not; its log is {home}/Library/Logs/dask-worker.log.""",
        file=sys.stderr,
    )
    return 0


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["certs", "worker"])
    parser.add_argument("folder", nargs="?", metavar="FOLDER", help="certs: where to make them (a new or empty folder)")
    parser.add_argument("--days", type=int, default=3650, help="certs: how long they hold (default: 3650)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="worker: the scheduler, tls://HOST:8786")
    parser.add_argument("--name", metavar="NAME", help="worker: its name (as [executors.X] nodes maps it)")
    parser.add_argument("--user", metavar="USER", help="worker: the Mini's account it runs as (default: yours)")
    parser.add_argument("--home", metavar="DIR", help="worker: that account's home (default: /Users/USER)")
    parser.add_argument("--dask", metavar="PATH", help="worker: the dask command (default: HOME/dask/bin/dask)")
    parser.add_argument("--tls", metavar="DIR", help="worker: ca.pem, node.pem, node-key.pem (default: HOME/tls)")


def main(args: argparse.Namespace) -> int:
    if args.action == "worker":
        return worker(args)
    if not args.folder:
        raise UsageError("pool certs needs a FOLDER: where to make them (a new or empty folder)")
    folder = Path(args.folder).expanduser().resolve()
    make(folder, args.days)
    print(
        f"""made in {folder}:
  ca.pem          the pool's CA: on every machine of the pool (ca-key.pem stays here, private)
  node.pem        node-key.pem: the scheduler's and the workers', copied to each Mini
  client.pem      client-key.pem: this machine's

On the scheduler's Mini:
  dask scheduler --protocol tls --tls-ca-file ca.pem --tls-cert node.pem --tls-key node-key.pem
On each Mini:
  dask worker tls://SCHEDULER:8786 --tls-ca-file ca.pem --tls-cert node.pem --tls-key node-key.pem \\
    --resources mps=1 --name mac-1
In mm4.toml, under [executors.NAME] (type = "dask"):
  scheduler = "tls://SCHEDULER:8786"
  tls_ca = "{folder / "ca.pem"}"
  tls_cert = "{folder / "client.pem"}"
  tls_key = "{folder / "client-key.pem"}\""""
    )
    return 0
