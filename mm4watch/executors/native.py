"""The native executor (type "ssh"): papermill on the Mini's own Python, for GPU work.

Docker on macOS has no GPU; this runs where MPS and MLX are. Over one shared
SSH connection:

1. rsync the project's code (what a build context holds) to
   ``<workdir>/<project>/code`` and mm4watch's runner to ``.../lib``: a code
   change sends kilobytes;
2. a virtual environment per hash of requirements.txt and the interpreter's
   version (``.../venvs/<hash>``, built once, with papermill and ipykernel);
3. each run gets its own folder ``.../runs/<run id>`` (a copy of the code, the
   job, the output), the notebook starts detached (``nohup``, pid file), so a
   dropped connection or a restarted daemon does not stop it;
4. the log streams home, partial results every ``harvest_every``, results
   home at the end (also after failure, timeout, cancel); timeout and cancel
   kill the whole process tree (kernel included); the run folder is removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import mm4watch

from .. import ssh
from ..config import ENV_OUTPUT_DIR, ENV_RUN_ID, Config, ExecutorConfig, _slug
from ..durations import format_duration
from ..names import join, quote
from ..records import BUILD_LOG_NAME, RESERVED_NAMES
from . import Job, Outcome

POLL_S = 1.0
STOP_GRACE_S = 5
RESULT_DIR = ".mm4"
ALWAYS_EXCLUDED = (".git/", ".mm4/", "__pycache__/", ".ipynb_checkpoints/", "*.ipynb", ".venv/", "venv/")
ENV_PROBE = (
    "import json, platform, sys\n"
    "try:\n    import torch\n    mps = bool(torch.backends.mps.is_available())\nexcept Exception:\n    mps = None\n"
    "print(json.dumps({'python': sys.version.split()[0], 'platform': platform.platform(), 'mps': mps}))\n"
)
# every process under a pid, deepest first: what stop kills (a kernel runs in a session of its own)
TREE = """tree() { for c in $(ps -A -o pid= -o ppid= | awk -v p="$1" '$2 == p {print $1}'); do tree "$c"; done; echo "$1"; }"""


class NativeExecutor:
    def __init__(self, cfg: ExecutorConfig, config: Config) -> None:
        self.cfg = cfg
        self.config = config
        self.target = ssh.Target.parse(cfg.host or "", cfg.ssh_options)
        self.python = cfg.python or "python3"
        self.base = (cfg.workdir or "mm4watch").rstrip("/") + "/" + _slug(config.root.name)

    def describe(self) -> dict[str, Any]:
        return {"name": self.cfg.name, "type": "ssh", "host": self.target.label}

    def _sh(self, command: str, timeout: float = 60, input: bytes | None = None) -> str:
        return ssh.run(ssh.shared(self.target), command, timeout=timeout, input=input).stdout.decode(errors="replace")

    def check(self) -> None:
        self._sh("true", timeout=20)

    # -- preparing ----------------------------------------------------------------

    def _prepare(self, job: Job) -> dict[str, Any]:
        target = ssh.shared(self.target)
        lib = Path(mm4watch.__file__).parent
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(lib.rglob("*.py")))).hexdigest()[:16]
        # one round trip: folders, where home is, the interpreter's version, the runner's version there
        folders = [f"{self.base}/{sub}" for sub in ("runs", "venvs", "code", "lib/mm4watch")]
        facts = self._sh(
            f"{join(['mkdir', '-p', *folders])} && cd && pwd && "
            f"{join([self.python, '-c', 'import sys; print(sys.version)'])} && "
            f"cat {quote(self.base + '/lib/.digest')} 2>/dev/null; true",
            timeout=30,
        ).splitlines()
        if len(facts) < 2:
            raise ssh.Unreachable(
                f"{self.python} does not run on {self.target.label}; `mm4watch doctor {self.cfg.name}`"
            )
        home, version = facts[0].strip(), facts[1].strip()
        base = f"{home}/{self.base}"
        excludes = [f"--exclude={pattern}" for pattern in ALWAYS_EXCLUDED]
        excludes += [f"--exclude=/{self.config.project.results}/", f"--exclude=/{self.config.project.data}/"]
        if (self.config.root / ".dockerignore").exists():
            excludes.append(f"--exclude-from={self.config.root / '.dockerignore'}")
        ssh.rsync_to(target, self.config.root, f"{base}/code", extra=excludes, mkdir=False)
        if facts[2:3] != [digest]:  # mm4watch's runner changed (or is not there yet)
            ssh.rsync_to(
                target,
                lib,
                f"{base}/lib/mm4watch",
                mkdir=False,
                extra=["--exclude=__pycache__/", "--include=*/", "--include=*.py", "--exclude=*"],
            )
            self._sh(f"echo {digest} > {quote(base + '/lib/.digest')}")
        return {"base": base, "env": self._environment(base, version, job)}

    def _environment(self, base: str, version: str, job: Job) -> dict[str, Any]:
        """The venv for this requirements.txt and interpreter: reused, or built now."""
        requirements = self.config.root / "requirements.txt"
        content = requirements.read_bytes() if requirements.exists() else b""
        key = hashlib.sha256(content + b"\0" + version.encode()).hexdigest()[:16]
        venv = f"{base}/venvs/{key}"
        log = job.run_dir / BUILD_LOG_NAME
        keep = self.cfg.keep_images  # environments are kept like images: the newest few
        ready = self._sh(
            f"(cd {quote(base + '/venvs')} && ls -1t | grep -v -x {key} | tail -n +{int(keep)} | xargs rm -rf --); "
            f"test -f {quote(venv + '/.ready')} && cat {quote(venv + '/env.json')} || true"
        ).strip()
        if not ready:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"building the environment {key} on {self.target.label} ({version.split()[0]})\n")
            req = ["-r", f"{base}/code/requirements.txt"] if content else []
            vpy = f"{venv}/bin/python"
            # built in place (a venv cannot move); .ready marks it whole, so a half-built one is redone
            out = self._sh(
                f"{join(['rm', '-rf', venv])} && {join([self.python, '-m', 'venv', venv])} && "
                f"{join([vpy, '-m', 'pip', 'install', '-q', '--disable-pip-version-check', 'papermill', 'ipykernel', *req])} 2>&1 && "
                f"{join([vpy, '-c', ENV_PROBE])} > {quote(venv + '/env.json')} && touch {quote(venv + '/.ready')} && "
                f"cat {quote(venv + '/env.json')}",
                timeout=1800,
            )
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(out)
            ready = out.strip().splitlines()[-1]
        else:
            log.write_text(f"environment {key} is ready on {self.target.label}: reused\n")
        return {**json.loads(ready), "env_hash": key, "venv": venv}

    # -- running ------------------------------------------------------------------

    def execute(self, job: Job) -> Outcome:
        info = dict(self.describe())
        prepared = self._prepare(job)
        env = prepared.pop("env")
        info.update(python=env["python"], platform=env["platform"], env_hash=env["env_hash"], mps=env["mps"])
        run = f"{prepared['base']}/runs/{job.key}"  # the safe key: never the name as written
        rel_cwd = job.cwd.resolve().relative_to(self.config.root).as_posix()
        cwd = f"{run}/code" + ("" if rel_cwd == "." else f"/{rel_cwd}")
        data = ""
        if self.cfg.data:
            if self.cfg.sync_data and (self.config.root / self.config.project.data).is_dir():
                ssh.rsync_to(ssh.shared(self.target), self.config.root / self.config.project.data, self.cfg.data)
                self._sh(join(["chmod", "-R", "a-w", self.cfg.data]))  # read-only, as the container mount
            data = " && " + join(["ln", "-s", self.cfg.data, f"{run}/code/{self.config.project.data}"])
        if job.mirror:
            from .. import mirror

            home = prepared["base"][: -len(self.base)].rstrip("/")
            remote = mirror.remote_dir(self.config, f"{home}/{self.cfg.workdir or 'mm4watch'}")
            pushed = mirror.push(ssh.shared(self.target), self.config.results_dir, remote, job.inputs)
            with open(job.log_path, "a", encoding="utf-8") as fh:
                fh.write(f"mm4watch: {pushed.line(len(job.inputs))}\n")
            # earlier runs where the notebook looks for them (../results), read-only
            data += " && " + join(["ln", "-s", pushed.remote_dir, f"{run}/code/{self.config.project.results}"])
        spec = {
            "input": f"{run}/job/input.ipynb",
            "output": f"{run}/output/{RESULT_DIR}/executed.ipynb",
            "result": f"{run}/output/{RESULT_DIR}/result.json",
            "parameters": job.parameters,
            "cwd": cwd,
            "kernel": job.kernel,
            "env": {ENV_RUN_ID: job.run_id},
        }
        job_tar = io.BytesIO()
        with tarfile.open(fileobj=job_tar, mode="w:gz") as tar:
            for name, content in (
                ("spec.json", json.dumps(spec).encode()),
                ("input.ipynb", job.input_path.read_bytes()),
            ):
                member = tarfile.TarInfo(name)
                member.size = len(content)
                tar.addfile(member, io.BytesIO(content))
        runner = [
            "env",
            f"{ENV_OUTPUT_DIR}={run}/output",
            f"{ENV_RUN_ID}={job.run_id}",
            f"PYTHONPATH={prepared['base']}/lib",
            "PYTHONUNBUFFERED=1",
            "nohup",
            f"{env['venv']}/bin/python",
            "-m",
            "mm4watch.executors.papermill_child",
            f"{run}/job/spec.json",
        ]
        # one round trip: the run's own folder (a copy of the code), the job, and the start;
        # only the runner goes to the background, with every descriptor away from the ssh
        # session: ssh returns at once, and the run outlives the connection
        self._sh(
            f"{join(['mkdir', '-p', f'{run}/job', f'{run}/output/{RESULT_DIR}'])} && "
            f"{join(['cp', '-a', prepared['base'] + '/code', run + '/code'])}{data} && "
            f"{join(['tar', '-xzf', '-', '-C', run + '/job'])} && cd {quote(cwd)} && "
            f"{{ {join(runner)} > {quote(run + '/run.log')} 2>&1 < /dev/null & echo $! > {quote(run + '/pid')}; }}",
            input=job_tar.getvalue(),
        )
        return self._follow(job, run, info)

    def reattach(self, job: Job) -> Outcome | None:
        home = self._sh("cd && pwd").strip()
        run = f"{home}/{self.base}/runs/{job.key}"
        if self._sh(f"test -f {quote(run + '/pid')} && echo yes || true").strip() != "yes":
            return None
        return self._follow(job, run, {**self.describe(), "reattached": True}, offset=None)

    def _follow(self, job: Job, run: str, info: dict[str, Any], offset: int | None = 0) -> Outcome:
        deadline = time.monotonic() + job.timeout_s
        next_harvest = time.monotonic() + self.cfg.harvest_every_s
        if offset is None:  # re-attached: the log so far is home already
            offset = int(self._sh(f"wc -c < {quote(run + '/run.log')} || echo 0").strip() or 0)
        status = "exited"
        try:
            with open(job.log_path, "ab") as sink:
                while True:
                    # the far side waits (up to 5 s) for the runner to end: the end is seen at once
                    wait = max(1, min(50, int(10 * min(deadline, next_harvest) - 10 * time.monotonic())))
                    try:
                        out = ssh.run(
                            ssh.shared(self.target),
                            f"pid=$(cat {quote(run + '/pid')}); for i in $(seq {int(wait)}); do kill -0 $pid 2>/dev/null || break; "
                            f"sleep 0.1; done; if kill -0 $pid 2>/dev/null; then echo running; else echo done; fi; "
                            f"tail -c +{int(offset) + 1} {quote(run + '/run.log')}",
                            timeout=60,
                        ).stdout
                    except ssh.Unreachable:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(POLL_S)  # the run goes on over there; look again
                        continue
                    state, _, chunk = out.partition(b"\n")
                    sink.write(chunk)
                    sink.flush()
                    offset += len(chunk)
                    if state.strip() == b"done":
                        break
                    if time.monotonic() > deadline:
                        self._stop(run)
                        status = "timeout"
                        break
                    if time.monotonic() >= next_harvest:
                        self._harvest(job, run)
                        next_harvest = time.monotonic() + self.cfg.harvest_every_s
        except KeyboardInterrupt:
            self._stop(run)
            self._harvest(job, run)
            self._sh(join(["rm", "-rf", run]))
            raise
        self._harvest(job, run)
        outcome = self._outcome(job, status, info)
        self._sh(join(["rm", "-rf", run]))
        return outcome

    def _stop(self, run: str) -> None:
        """TERM the runner (papermill saves what ran), then KILL its whole tree, kernel included."""
        self._sh(
            f"{TREE}; pid=$(cat {quote(run + '/pid')}); all=$(tree $pid); kill -TERM $pid 2>/dev/null; "
            f"for i in $(seq {STOP_GRACE_S * 10}); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; "
            f"kill -KILL $all 2>/dev/null; true",
            timeout=60,
        )

    def _harvest(self, job: Job, run: str) -> None:
        ssh.fetch_tar(
            ssh.shared(self.target),
            join(["tar", "-C", f"{run}/output", "-czf", "-", "."]),
            job.run_dir,
            skip=RESERVED_NAMES,
        )
        executed = job.run_dir / RESULT_DIR / "executed.ipynb"
        if executed.exists():
            executed.replace(job.run_dir / "executed.ipynb")

    def _outcome(self, job: Job, status: str, info: dict[str, Any]) -> Outcome:
        import shutil

        result_path = job.run_dir / RESULT_DIR / "result.json"
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError):
            result = None
        shutil.rmtree(job.run_dir / RESULT_DIR, ignore_errors=True)
        if status == "timeout":
            error = dict((result or {}).get("error") or {})
            error.update(ename="Timeout", evalue=f"the run exceeded its timeout of {format_duration(job.timeout_s)}")
            return Outcome("timeout", error, info)
        if result is None:
            return Outcome(
                "failed",
                {
                    "cell": None,
                    "ename": "ProcessDied",
                    "evalue": "papermill on the Mini ended without a result; see run.log",
                },
                info,
            )
        return Outcome(result["status"], result.get("error"), info)
