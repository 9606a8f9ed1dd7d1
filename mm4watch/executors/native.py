"""The native executor (type "native", also accepted as "ssh"): papermill on the Mini's own Python, for GPU work.

Docker on macOS has no GPU; this runs where MPS and MLX are. Over one shared
SSH connection:

1. mm4watch's far side to ``<workdir>/<project>/lib`` (rsync, when it changed),
   the project's code (what a build context holds) to ``.../code`` when its
   digest changed: the steps there are Python (``far.there``, ``far.venvs``),
   sent arguments, not shell programs;
2. a virtual environment per hash of requirements.txt and the interpreter's
   version (``.../venvs/<hash>``, built once, with papermill and ipykernel);
3. each run gets its own folder ``.../runs/<run key>`` (a copy of the code, the
   job, the output), the notebook starts detached (its own session, pid file), so a
   dropped connection or a restarted daemon does not stop it;
4. the log streams home, partial results every ``harvest_every``, results
   home at the end (also after failure, timeout, cancel); timeout and cancel
   kill the whole process tree (kernel included); the run folder is removed.
"""

from __future__ import annotations

import fcntl
import gzip
import io
import json
import re
import tarfile
import time
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

from ..core import checks, fsutil
from ..core.config import Config, ConfigProblem, setting
from ..core.errors import Mm4Error
from ..core.names import join, quote
from ..core.runenv import ENV_OUTPUT_DIR, ENV_RUN_ID
from ..remote import buildctx, ssh
from ..results.records import RESERVED_NAMES
from . import Job, native_env
from .base import STOP_GRACE_S, Executor, RemoteConfig
from .far_side import FAR_SIDE_PYTHON, RESULT_DIR, RUNNER, far_side_includes, job_spec, runner_digest, runner_files
from .runlog import log_line
from .upkeep import MIN_FREE_GB, Checkup, check_awake, check_copies, check_ssh, gc_copies

POLL_S = 1.0
THERE = "mm4watch.far.there"  # the far side's steps, run by the machine's own python3
# every process under a pid, deepest first: what stop kills (a kernel runs in a session of its own)


@dataclass(frozen=True)
class NativeConfig(RemoteConfig):
    """``type = "native"`` (also ``"ssh"``): the Mini's own Python, for GPU work."""

    python: str | None = setting(checks.text)
    uv_cache_max: int = setting(checks.size, 20 << 30)  # `gc` empties the Mini's uv cache past this size
    keep_environments: int = setting(checks.positive_int, 3)  # this project's environments kept there
    renamed: ClassVar[dict[str, str]] = {"keep_images": "keep_environments"}  # its first name, still read

    def check(self) -> None:
        if not self.host:
            raise ConfigProblem(None, 'a native executor needs host = "ssh://user@machine"')
        super().check()


@dataclass
class _Remote:
    run: str  # the run's folder over there
    offset: int = 0  # bytes of its log already home
    log: IO[bytes] | None = None
    start: dict[str, Any] = field(default_factory=dict)  # the far side's start step: its arguments
    job_tar: bytes = b""  # spec.json and the notebook, sent on stdin
    pins: list[tuple[ssh.Target, str, str]] = field(default_factory=list)  # earlier results it holds there
    keep: bool = False  # what it wrote did not come home: its folder stays there


class NativeExecutor(Executor[_Remote]):
    type = "native"
    config_class = NativeConfig
    died = "papermill on the Mini ended without a result; see run.log"

    settings: NativeConfig

    def __init__(self, settings: NativeConfig, config: Config) -> None:
        super().__init__(settings, config)
        self.target = ssh.Target.parse(settings.host or "", settings.ssh_options)
        self.python = settings.python or "python3"
        self.base = (settings.workdir or "mm4watch").rstrip("/") + "/" + config.project_key

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "host": self.target.label}

    def _sh(self, command: str, timeout: float = 60, input: bytes | None = None) -> str:
        return ssh.run(ssh.shared(self.target), command, timeout=timeout, input=input).stdout.decode(errors="replace")

    def check(self) -> None:
        self._sh("true", timeout=20)

    # -- what the commands around a run ask ---------------------------------------------

    def doctor(self, report: Checkup) -> None:
        """ssh, the interpreter (3.9 or newer), venv, keeping the Mini awake, free disk."""
        target, python = self.target, self.python
        if not check_ssh(report, target):
            return

        lowest = ".".join(map(str, FAR_SIDE_PYTHON))
        newer = (
            f'a newer Python on that machine, and python = "/absolute/path" under [executors.{self.settings.name}] '
            "(ssh's PATH there is /usr/bin:/bin:/usr/sbin:/sbin): Homebrew's `brew install python@3.12` gives "
            "/opt/homebrew/bin/python3.12, `uv python install 3.12` one under ~/.local/share/uv/python"
        )

        found: list[tuple[int, int]] = []

        def interpreter() -> str:
            probe = "import sys, platform; print(sys.version_info[0], sys.version_info[1], sys.version.split()[0], sys.executable, platform.platform())"
            out = ssh.run(target, join([python, "-c", probe]), timeout=30).stdout.decode().split()
            if len(out) < 5:
                raise Mm4Error(f"{python} gave no version: {' '.join(out)!r}")
            if (int(out[0]), int(out[1])) < FAR_SIDE_PYTHON:
                raise Mm4Error(f"{python} is Python {out[2]} ({out[3]}); runs need {lowest} or newer")
            found.append((int(out[0]), int(out[1])))
            return f"{out[2]} ({out[3]}, {out[4]}): runs use it"

        if not report.check(
            "python",
            interpreter,
            f"{newer}. Not found at all on a fresh Mac: /usr/bin/python3 needs the Command Line Tools "
            "(`xcode-select --install`), or use one of those",
        ):
            return
        if found and found[0] < (3, 10):
            report.warn("python", f"{found[0][0]}.{found[0][1]}: {self._old_python_costs()}; for those: {newer}")

        def venv() -> str:
            ssh.run(target, f"d=$(mktemp -d) && {quote(python)} -m venv --without-pip $d/v && rm -rf $d", timeout=60)
            return "can create virtual environments"

        report.check("venv", venv, f"{python} lacks the venv module: {newer} (Debian: apt install python3-venv)")
        check_awake(report, target)
        check_copies(report, target, self.config, self.settings.workdir or "mm4watch")
        workdir = quote(self.settings.workdir or "mm4watch")
        out = ssh.run(target, f"mkdir -p {workdir} && df -Pk {workdir} | tail -1", timeout=30).stdout.decode().split()
        free_gb = int(out[3]) / 2**20 if len(out) > 3 else 0.0
        if free_gb < MIN_FREE_GB:
            report.fail(
                "free disk",
                f"{free_gb:.1f} GiB under {self.settings.workdir or '~/mm4watch'}",
                "free space on that machine",
            )
        else:
            report.ok("free disk", f"{free_gb:.1f} GiB under {self.settings.workdir or '~/mm4watch'}")

    def _old_python_costs(self) -> str:
        """What Python 3.9 (a fresh Mac's /usr/bin/python3) costs this project's requirements."""
        from ..core.requirements import names

        wanted = names(self.config.root / "requirements.txt")
        heavy = [n for n in ("torch", "numpy", "scikit-learn", "pandas", "scipy", "mlx") if n in wanted]
        said = "torch 2.9 and later, current numpy, pandas, scipy and scikit-learn need Python 3.10 or newer"
        if heavy:
            return f"{said}: pip installs old releases of {', '.join(heavy)} (requirements.txt) without a word"
        return said

    def gc(self, keep: int | None) -> list[str]:
        return [
            *gc_copies(ssh.shared(self.target), self.config, self.settings.workdir or "mm4watch"),
            native_env.gc_uv_cache(self),
            f"executor {self.name!r} keeps the newest {self.settings.keep_environments} environments on "
            f"{self.target.label}, pruned after each run",
        ]

    # -- preparing ----------------------------------------------------------------

    def _sync(self, job: Job) -> dict[str, Any]:
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
                f"{self.python} does not run on {self.target.label}; `mm4watch doctor {self.settings.name}`"
            )
        home, version = facts[0].strip(), facts[1].strip()
        found = re.match(r"(\d+)\.(\d+)", version)
        if found is None or (int(found.group(1)), int(found.group(2))) < FAR_SIDE_PYTHON:
            lowest = ".".join(map(str, FAR_SIDE_PYTHON))
            raise Mm4Error(
                f"{self.python} on {self.target.label} is Python {version.split()[0]}; runs need {lowest} or newer: "
                f'set python = "/absolute/path" of a newer one under [executors.{self.settings.name}] '
                f"(`mm4watch doctor {self.settings.name}` says where to get one)"
            )
        base = f"{home}/{self.base}"
        # the project's files as an image gets them (the same .dockerignore rules, buildctx), notebooks
        # left out (each run gets its own as its job); the copy there is shared by the project's runs:
        # brought to this run's code and copied for this run alone, while no other run of this
        # machine's brings it to other code
        ctx = buildctx.make(self.config, image=False)
        self._far_side(base, facts[2:3])  # it goes first: the steps below are its
        with open(fsutil.host_lock("code", f"{self.target.label}\0{base}"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            said = self._there(f"{base}/lib", "code", base=base, run=job.key, digest=ctx.digest)
            if not said["copied"]:  # the copy there is of other code: this one is sent
                self._there(
                    f"{base}/lib", "code", base=base, run=job.key, digest=ctx.digest, incoming=True,
                    stdin=gzip.compress(ctx.data, 6), timeout=600,
                )  # fmt: skip
        return {"home": home, "base": base, "env": native_env.environment(self, base, version, job)}

    def _far_side(self, base: str, there: list[str] | None = None) -> str:
        """mm4watch's far side shipped to ``<base>/lib`` unless the copy there is of this version
        (``there``: its digest as read already, else read now). Its folder."""
        digest = runner_digest()[:16]
        if there is None:
            there = self._sh(f"cat {quote(base + '/lib/.digest')} 2>/dev/null; true").split()[:1]
        if there != [digest]:
            self._sh(join(["mkdir", "-p", f"{base}/lib/mm4watch"]))
            lib, _ = runner_files()
            extra = [*far_side_includes(), "--exclude=*", "--delete-excluded"]
            ssh.rsync_to(ssh.shared(self.target), lib, f"{base}/lib/mm4watch", mkdir=False, extra=extra)
            self._sh(f"echo {digest} > {quote(base + '/lib/.digest')}")
        return f"{base}/lib"

    def _there(
        self, lib: str, step: str, stdin: bytes | None = None, timeout: float = 120, **args: Any
    ) -> dict[str, Any]:
        """A far-side step (``far.there``) on that machine, with the far side shipped to ``lib``:
        arguments go (a flag for True), not a shell program; its line of JSON comes back (and the
        bytes it sends before it, as ``raw``). A step's error is raised, with the machine's name."""
        argv = [f"PYTHONPATH={lib}", self.python, "-m", THERE, step]
        for name, value in args.items():
            argv += [f"--{name}"] if value is True else [f"--{name}", str(value)]
        out = ssh.run(ssh.shared(self.target), join(["env", *argv]), timeout=timeout, input=stdin).stdout
        head, _, line = out.rstrip(b"\n").rpartition(b"\n")  # the line of JSON comes last
        if not line.startswith(b"{"):
            raise Mm4Error(f"{step} on {self.target.label} gave no answer: {out[-300:].decode(errors='replace')!r}")
        said: dict[str, Any] = json.loads(line)
        size = int(said.get("bytes") or 0)
        said["raw"] = head[len(head) - size :] if size else b""  # the bytes sent before it
        if said.get("error"):
            raise Mm4Error(f"{step} on {self.target.label} failed: {said['error']}")
        return said

    # -- running ------------------------------------------------------------------

    def prepare(self, job: Job, info: dict[str, Any]) -> _Remote:
        job.phase(f"syncing code to {self.target.label}")
        prepared = self._sync(job)
        env = prepared.pop("env")
        info.update(python=env["python"], platform=env["platform"], env_hash=env["env_hash"], mps=env["mps"])
        run = f"{prepared['base']}/runs/{job.key}"  # the safe key: never the name as written
        rel_cwd = job.cwd.resolve().relative_to(self.config.code_root).as_posix()
        cwd = f"{run}/code" + ("" if rel_cwd == "." else f"/{rel_cwd}")
        links: dict[str, str] = {}  # where a link goes in the run's code: what it points at
        if self.settings.data:
            if self.settings.sync_data and (self.config.root / self.config.project.data).is_dir():
                # writable again first: the last run's sync left it read-only, and new files go into it
                self._sh(f"mkdir -p {quote(self.settings.data)} && chmod -R u+w {quote(self.settings.data)}")
                ssh.rsync_to(
                    ssh.shared(self.target),
                    self.config.root / self.config.project.data,
                    self.settings.data,
                    mkdir=False,
                )
                self._sh(join(["chmod", "-R", "a-w", self.settings.data]))  # read-only, as the container mount
            links[f"{run}/code/{self.config.project.data}"] = self.settings.data
        target = ssh.shared(self.target)
        pushed = self.send_earlier(job, target, f"{prepared['home']}/{self.settings.workdir or 'mm4watch'}")
        if pushed is not None:
            # earlier runs where the notebook looks for them (../results), read-only
            links[f"{run}/code/{self.config.project.results}"] = pushed.remote_dir
        spec = job_spec(
            job,
            notebook=f"{run}/job/input.ipynb",
            output_dir=f"{run}/output",
            cwd=cwd,
            project=f"{run}/code",
            results=f"{run}/code/{self.config.project.results}",
        )
        job_tar = io.BytesIO()
        with tarfile.open(fileobj=job_tar, mode="w:gz") as tar:
            for name, content in (
                ("spec.json", json.dumps(spec).encode()),
                ("input.ipynb", job.input_path.read_bytes()),
            ):
                member = tarfile.TarInfo(name)
                member.size = len(content)
                tar.addfile(member, io.BytesIO(content))
        start = {
            "run": run, "cwd": cwd, "python": f"{env['venv']}/bin/python", "module": RUNNER,
            "folders": json.dumps([f"output/{RESULT_DIR}"]),
            "links": json.dumps(links), "env": json.dumps({ENV_OUTPUT_DIR: f"{run}/output", ENV_RUN_ID: job.run_id}),
        }  # fmt: skip
        pins = [(target, pushed.remote_dir, job.key)] if pushed is not None else []
        return _Remote(run, start=start, job_tar=job_tar.getvalue(), pins=pins)

    def start(self, handle: _Remote, job: Job) -> None:
        # one round trip (far.there.start): the run's folder, its links, the job unpacked, and the
        # runner started on its own, away from the ssh session (which returns at once; the run
        # outlives the connection); the Mini kept awake while the runner lives (caffeinate -w)
        said = self._there(_lib_of(handle.run), "start", stdin=handle.job_tar, **handle.start)
        if said["awake"]:
            log_line(job, f"{self.target.label} is kept awake while the run lasts (caffeinate -i)")
        handle.log = open(job.log_path, "ab")  # noqa: SIM115 (closed in release)

    def find(self, job: Job, info: dict[str, Any]) -> _Remote | None:
        home = self._sh("cd && pwd").strip()
        run = f"{home}/{self.base}/runs/{job.key}"
        said = self._there(f"{home}/{self.base}/lib", "found", run=run)
        if not said["started"]:
            return None
        # re-attached: the log so far is home already
        pins = [(ssh.shared(self.target), self._copy(home), job.key)]  # what its first process pinned
        return _Remote(run, int(said["log_bytes"]), open(job.log_path, "ab"), pins=pins)  # noqa: SIM115 (closed in release)

    def _copy(self, home: str) -> str:
        """The project's copy of earlier results there."""
        from ..remote import mirror

        return mirror.remote_dir(self.config, f"{home}/{self.settings.workdir or 'mm4watch'}")

    def poll(self, handle: _Remote, job: Job, wait_s: float) -> int | None:
        # the far side waits (up to 5 s) for the runner to end: the end is seen at once
        run = handle.run
        result = f"{run}/output/{RESULT_DIR}/result.json"
        wait = max(0.1, min(5.0, wait_s))
        try:
            said = self._there(
                _lib_of(run), "poll", run=run, result=result, wait=wait, offset=handle.offset, timeout=60
            )
        except ssh.Unreachable:
            if ssh.probe(self.target):  # one command lost, the Mini there: the run goes on; look again
                time.sleep(POLL_S)
                return None
            raise  # the Mini went away: the shared steps wait for it (Executor._away)
        chunk = said.get("raw", b"")
        if handle.log is not None:
            handle.log.write(chunk)
            handle.log.flush()
        handle.offset += len(chunk)
        return 0 if said["ended"] else None  # its result.json says how it went

    def stop(self, handle: _Remote) -> None:
        """TERM the runner (papermill saves what ran), then KILL its whole tree, kernel included."""
        self._there(_lib_of(handle.run), "stop", run=handle.run, grace=STOP_GRACE_S)

    def fetch(self, handle: _Remote, job: Job) -> None:
        ssh.fetch_tar(
            ssh.shared(self.target),
            # Apple's tar adds ._name entries for extended attributes unless told not to
            "COPYFILE_DISABLE=1 " + join(["tar", "-C", f"{handle.run}/output", "-czf", "-", "."]),
            job.run_dir,
            skip=RESERVED_NAMES,
            log=job.log_path,
        )

    def release(self, handle: _Remote) -> None:
        if handle.log is not None:
            handle.log.close()
        self.let_go_earlier(handle.pins)
        if handle.keep:
            return
        try:
            self._sh(join(["rm", "-rf", handle.run]))
        except ssh.Unreachable:
            pass  # the Mini went away: its run folder stays until it is back (and is small)

    # -- the Mini went away mid-run ---------------------------------------------------------

    rides_out_loss = True

    def answers(self) -> bool:
        return ssh.probe(self.target)

    def keep_there(self, handle: _Remote) -> str:
        handle.keep = True
        return f"its folder {handle.run} there"

    def reconnect(self, handle: _Remote, job: Job, went_at: float) -> tuple[str, int | None, str]:
        """The runner goes on (its pid alive, the machine not restarted), ended on its own meanwhile (its
        result written), or ended with the machine: its boot time after the loss says it restarted."""
        from ..core.durations import clock_time

        run = handle.run
        result = f"{run}/output/{RESULT_DIR}/result.json"
        said = self._there(_lib_of(run), "state", run=run, result=result)
        booted = ssh.restarted_at(said["boot"], went_at)
        if booted is not None:
            return "ended", None, f"the Mini restarted at {clock_time(booted)}, and the run with it"
        if said["result"]:
            return "exited", 0, ""
        if said["alive"]:
            return "running", None, ""
        return "ended", None, "papermill on the Mini ended while the Mini did not answer"


def _lib_of(run: str) -> str:
    """The far side's folder of the project whose run folder is ``run`` (``<base>/runs/<key>``)."""
    return run.rsplit("/runs/", 1)[0] + "/lib"
