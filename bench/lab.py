"""The Lab extension's handlers in a running Jupyter server, on a project of 10,000 runs: the status
handler (target: median answer under 30 ms) and one notebook's runs, against Jupyter's own
`/api/status` (the cost of any authenticated request to that server), measured in the same run.

Usage: python bench/lab.py [--runs 10000] [--requests 50]
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from history import populate  # noqa: E402

TARGET_MS = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        populate(root, args.runs)
        subprocess.run(
            [sys.executable, "-m", "mm4watch", "history", "--limit", "1"], cwd=root, check=True, capture_output=True
        )  # fmt: skip  (the index, as any earlier command leaves it)
        port, token = free_port(), secrets.token_hex(16)
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", f"--port={port}", "--no-browser", f"--ServerApp.token={token}",
             f"--ServerApp.root_dir={root}", "--ServerApp.jpserver_extensions={'mm4watch.lab': True}",
             "--ServerApp.allow_root=True"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"

            def get(path: str) -> bytes:
                request = urllib.request.Request(base + path, headers={"Authorization": f"token {token}"})
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return bytes(answer.read())

            deadline = time.monotonic() + 60
            while True:
                try:
                    get("/api/status")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            paths = {
                "jupyter's /api/status (baseline)": "/api/status",
                "mm4watch status": "/mm4watch/api/status",
                "one notebook's runs (limit 200)": "/mm4watch/api/runs?notebook=notebooks/nb01.ipynb",
            }
            samples: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(args.requests):
                for name, path in paths.items():
                    t0 = time.perf_counter()
                    body = get(path)
                    samples[name].append(time.perf_counter() - t0)
            runs = len(json.loads(body)["runs"])
        finally:
            server.terminate()
            server.wait(timeout=30)
    medians = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    base_ms = medians["jupyter's /api/status (baseline)"]
    print(f"the Lab extension's handlers on {args.runs} runs (median of {args.requests}, alternating)")
    for name, ms in medians.items():
        print(f"  {name:<34} {ms:7.1f} ms   ratio {ms / base_ms:5.2f} x baseline")
    ok = medians["mm4watch status"] <= TARGET_MS and runs == min(200, len(range(1, args.runs, 40)))
    print(f"  {runs} runs of nb01 listed; status {medians['mm4watch status']:.1f} ms "
          f"(target <= {TARGET_MS:.0f} ms) -> {'MET' if ok else 'NOT MET'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
