"""mm4watch pool certs FOLDER: the certificates a Dask pool runs with over TLS.

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


def main(args: argparse.Namespace) -> int:
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
