"""Shared fixtures: real folders, real git repositories, real notebooks.

Every test runs with HOME pointed into its own temp folder and with the MM4_*
variables cleared, so nothing reads or writes the real home or inherits a
developer's settings.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from support import (  # noqa: F401  (the helpers tests import from here)
    MAC_ENV,
    MACDOCKER_ENV,
    MACDOCKERS,
    POOL_ENV,
    REPO,
    RIG_ENV,
    TEST_DOCKERFILE,
    as_mac_user,
    code,
    dask_tls,
    git,
    held,
    mac_ssh_options,
    mac_values,
    macdocker_toml,
    macdocker_values,
    markdown,
    mini_ssh_args,
    mini_ssh_options,
    mini_toml,
    mm4,
    mm4_each,
    notebook_json,
    on_mac,
    on_macdocker,
    on_mini,
    on_node,
    pool_toml,
    pool_values,
    rig_values,
    write_notebook,
)

# Tiers, by the fixtures a test uses (its fixture closure: a fixture that asks for ``mini`` makes its
# tests rig tests too): `pytest -m "not rig"` is the fast tier, `-m "not rig and not kernel"` the quickest.
# Under pytest-xdist (``-n``, ``--dist loadgroup``), the tests of one rig part run one after another on one
# worker: they stop and restart its nodes (a power-cut test takes its Mini away) and check after each test
# that nothing is left held there. A test that asks for several parts (a fixture parametrized over the
# docker and the native Mini) is in the group of the first, or of the one its ``rig_part`` mark names:
# the part it uses.
RIG_FIXTURES = ("dask_rig", "pool", "macdocker", "mini", "mac", "lab_extension")  # first used names the test's group
MAC_PART = pytest.mark.rig_part("mac")  # for a param that runs on the Mac-like Mini alone


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        named = item.get_closest_marker("rig_part")
        part = named.args[0] if named else next((name for name in RIG_FIXTURES if name in used), None)
        if part:
            item.add_marker(pytest.mark.rig)
            item.add_marker(pytest.mark.xdist_group(part))
        if "kernel" in used:
            item.add_marker(pytest.mark.kernel)
    # The longest chains first, so no worker is left with one at the end while the others idle: a rig
    # part's tests run one after another on one worker, tests that start kernels take seconds each, the
    # rest milliseconds. A stable sort: within each kind, the files' order.
    items.sort(key=lambda item: 0 if item.get_closest_marker("rig") else 1 if item.get_closest_marker("kernel") else 2)


SESSION_MARK = "MM4_TEST_SESSION"  # a folder of this session's: its workers note there that they used the rig


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the workers inherit it
        import tempfile

        os.environ[SESSION_MARK] = tempfile.mkdtemp(prefix="mm4-test-session-")


def _rig_used() -> None:
    """This session reached the rig: its end cleans up after it (``pytest_sessionfinish``)."""
    folder = os.environ.get(SESSION_MARK)
    if folder:
        Path(folder, "rig-used").touch()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Once, in the process that ran or handed out the tests (not in each xdist worker), what the suite's
    runs left to outlive it by design: the warm containers on the fake Minis (they wait an hour for a next
    run), then the shared ssh connections to the rig (kept 10 minutes after their last use). A connection
    is the suite's when it authenticates with the rig's own key."""
    if hasattr(session.config, "workerinput") or not RIG_ENV.exists():
        return
    mark = Path(os.environ.get(SESSION_MARK, "/nonexistent"))
    used = (mark / "rig-used").exists()
    shutil.rmtree(mark, ignore_errors=True)
    if not used:  # a session that never reached the rig leaves another session's connections alone
        return
    values = rig_values()
    if not values:
        return
    on_mini(values, "docker ps -aq --filter name=mm4-warm- | xargs -r docker rm -f >/dev/null")
    mac_docker = macdocker_values()
    for which in MACDOCKERS if mac_docker else ():
        assert mac_docker is not None
        on_macdocker(
            mac_docker, which, "docker ps -aq --filter name=mm4-warm- | xargs -r docker rm -f >/dev/null", check=False
        )
    import psutil

    masters = []
    for proc in psutil.process_iter(["name", "cmdline", "uids"]):
        argv = proc.info["cmdline"] or []
        if proc.info["name"] == "ssh" and "-M" in argv and values["MINI_KEY"] in argv:
            if proc.info["uids"] and proc.info["uids"].real == os.getuid():
                masters.append(proc)
    for proc in masters:
        proc.terminate()
    psutil.wait_procs(masters, timeout=10)


@pytest.fixture(autouse=True)
def _rig_parts_asked_for_by_name(request: pytest.FixtureRequest) -> Iterator[None]:
    """A rig part fetched with ``request.getfixturevalue`` would leave the test out of the rig tier and
    of its part's group (then it would run beside that part's other tests): fail it, saying so."""
    yield
    used = set(request.fixturenames) & set(RIG_FIXTURES)
    if used and request.node.get_closest_marker("rig") is None:
        pytest.fail(f"{request.node.nodeid} uses {sorted(used)} without naming it as an argument (or in a fixture's)")


@pytest.fixture
def kernel() -> None:
    """The test starts a real Jupyter kernel: asking for this fixture marks it ``kernel`` (a tier; what
    a test leaves running is stopped by ``_no_leftover_processes``)."""


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith("MM4_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture(autouse=True)
def _no_leftover_processes(tmp_path: Path) -> Any:
    """Whatever a test started in its folders (a daemon, a run, a kernel) is gone after it, pass or fail."""
    yield
    import psutil

    me = os.getpid()
    for proc in psutil.process_iter():
        try:
            if proc.pid != me and proc.cwd().startswith(str(tmp_path)):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass


def _default_sigint() -> None:
    # a suite started from a background job inherits SIGINT ignored; the children a test
    # interrupts must get it as a terminal would deliver it
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project with an mm4.toml that uses the local executor."""
    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    (root / "mm4.toml").write_text('[run]\nexecutor = "local"\ntimeout = "2m"\n')
    return root


@pytest.fixture
def repo(project: Path) -> Path:
    """The project as a git repository with one commit."""
    git(project, "init", "-q", "-b", "main")
    (project / ".gitignore").write_text("results/\n.mm4/\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "init")
    return project


def mm4_background(args: Sequence[str], cwd: Path) -> subprocess.Popen[str]:
    """The real command line, left running while the test acts on it."""
    return subprocess.Popen(
        [sys.executable, "-m", "mm4watch", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def communicate(child: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """``child.communicate(timeout)``; a child that does not end in time fails the test with where each
    of its processes is stuck (py-spy's stacks, where py-spy is installed), then is killed."""
    import shutil

    import psutil

    try:
        return child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stacks = []
        if shutil.which("py-spy"):
            for p in [psutil.Process(child.pid), *psutil.Process(child.pid).children(recursive=True)]:
                said = subprocess.run(["py-spy", "dump", "--pid", str(p.pid)], capture_output=True, text=True)
                stacks.append(f"--- {p.pid} {' '.join(p.cmdline())[:200]}\n{said.stdout}{said.stderr}")
        child.kill()
        out, err = child.communicate()
        raise AssertionError(f"still running after {timeout}s\n{err[-3000:]}\n" + "\n".join(stacks)) from None


def wait_beside(child: subprocess.Popen[str], condition: Any, timeout: float, what: str) -> Any:
    """``wait_for(condition)`` while ``child`` runs (its output kept for the failure); one that does not
    come fails the test with what the child said, and where its processes are stuck if it still runs."""
    try:
        return wait_for(condition, timeout, what)
    except AssertionError:
        if child.poll() is None:
            communicate(child, 0.1)  # fails with the stacks
        out, err = child.communicate()
        raise AssertionError(
            f"timed out waiting for {what}; the command ended {child.returncode}:\n{err[-3000:]}"
        ) from None


def wait_for(condition: Any, timeout: float = 60, what: str = "condition", every: float = 0.1) -> Any:
    """The first true value of ``condition()``; fails the test after ``timeout`` seconds. A condition
    that reads a file not written yet (run.log just after its run folder is made) is not true yet."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except FileNotFoundError:
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def decisions(project: Path) -> list[dict[str, Any]]:
    """What the project's daemon decided about each save it saw, oldest first (``queue.decisions``)."""
    from mm4watch.queue.decisions import read

    return read(project / ".mm4")


def decided(project: Path, notebooks: Any, since: int, timeout: float = 30) -> dict[str, str]:
    """Each of ``notebooks``'s newest decision among those after the first ``since`` on record, waited
    for until every one has one: a negative check waits on what the daemon decided, not on time."""
    names = [notebooks] if isinstance(notebooks, str) else list(notebooks)

    def seen() -> dict[str, str] | None:
        newest = {d["notebook"]: d["decision"] for d in decisions(project)[since:]}
        return {n: newest[n] for n in names} if all(n in newest for n in names) else None

    return wait_for(seen, timeout, f"the daemon's decisions on {', '.join(names)}")


def first_run(project: Path, ready: Any, timeout: float = 60, what: str = "the run") -> Path:
    """The project's first run folder once ``ready(folder)`` holds (see wait_for: a file it reads
    that is not written yet is not ready)."""

    return wait_for(lambda: next((d for d in run_dirs(project)[:1] if ready(d)), None), timeout, what, every=0.2)


def most_at_once(spans: Any) -> int:
    """How many of ``spans`` (start, end) overlapped at most: at each start, those begun and not ended."""
    spans = list(spans)
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def sweep_through_daemon(project: Path, argv: list[str], runs: int, timeout: float) -> list[dict[str, Any]]:
    """``mm4watch sweep ARGV`` queued, the daemon started until the sweep's ``runs`` succeeded, then
    stopped: the runs' records, by folder name."""
    done = mm4(["sweep", *argv], cwd=project)
    assert done.returncode == 0, done.stderr
    try:
        assert mm4(["start"], cwd=project).returncode == 0
        wait_for(lambda: len([d for d in run_dirs(project) if status_of(d) == "succeeded"]) == runs,
                 timeout=timeout, what=f"the sweep's {runs} runs")  # fmt: skip
    finally:
        mm4(["stop", "--now"], cwd=project)
    return [load_record(d) for d in run_dirs(project)]


def run_dirs(project: Path) -> list[Path]:
    results = project / "results"
    return sorted(p for p in results.iterdir() if p.is_dir()) if results.exists() else []


def load_record(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run.json").read_text())


def status_of(run_dir: Path) -> str | None:
    """A run's status, or None in the moment between its folder and its first run.json."""
    try:
        return str(load_record(run_dir)["status"])
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------------------
# the two-machine rig (tests/rig/up.sh): a fake Mini reached only over SSH


def _unavailable(problem: str) -> None:
    """A part of the rig is missing: a failure under CI (what users depend on is never skipped there),
    a skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


def _answers(argv: list[str], within_s: float = 120) -> subprocess.CompletedProcess[str]:
    """``argv`` (a probe of a rig part) until it succeeds or ``within_s`` passed: a power-cut test of
    another group may have that Mini away for half a minute."""
    import time

    deadline = time.monotonic() + within_s
    while True:
        probe = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if probe.returncode == 0 or time.monotonic() > deadline:
            return probe
        time.sleep(2)


@pytest.fixture(scope="session")
def mini() -> dict[str, str]:
    """The fake Mini's address. A missing rig fails under CI and skips elsewhere."""
    _rig_used()
    if not RIG_ENV.exists():
        _unavailable(f"the test rig is not up ({RIG_ENV} missing): run `bash tests/rig/up.sh` as root")
    values = rig_values() or {}
    probe = _answers(["ssh", *mini_ssh_args(values), "docker", "info", "--format", "{{.ServerVersion}}"])
    if probe.returncode != 0:
        _unavailable(f"the fake Mini does not answer: {probe.stderr.strip()} (run `bash tests/rig/up.sh`)")
    return values  # the warm containers the suite left there are removed at its end (pytest_sessionfinish)


@pytest.fixture(scope="session")
def mac() -> dict[str, str]:
    """The Mac-like Mini (a fresh Mac's defaults). Missing: a failure under CI, a skip elsewhere."""
    _rig_used()
    values = mac_values()
    problem = "" if values else f"the Mac-like Mini is not up ({MAC_ENV} missing): run `bash tests/rig/up.sh` as root"
    if values:
        probe = _answers(["ssh", *mac_ssh_options(values), f"{values['MAC_USER']}@{values['MAC_HOST']}", "true"])
        if probe.returncode != 0:
            problem = f"the Mac-like Mini does not answer: {probe.stderr.strip()} (run `bash tests/rig/up.sh`)"
    if problem:
        _unavailable(problem)
    assert values is not None
    return values


@pytest.fixture(scope="session")
def macdocker() -> dict[str, str]:
    """The two Minis with a Mac's Docker (Docker Desktop-like, colima-like). Missing: a failure under
    CI, a skip elsewhere."""
    _rig_used()
    values = macdocker_values()
    problem = "" if values else f"the Mac Docker Minis are not up ({MACDOCKER_ENV} missing): run `bash tests/rig/up.sh`"
    for which in MACDOCKERS if values else ():
        assert values is not None
        probe = subprocess.run(
            ["docker", "exec", values[f"{which.upper()}_CONTAINER"], "test", "-S", values[f"{which.upper()}_SOCKET"]],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if probe.returncode != 0:
            problem = f"the {which} Mini has no engine socket: run `bash tests/rig/up.sh`"
    if problem:
        _unavailable(problem)
    assert values is not None
    return values


@pytest.fixture(scope="session")
def pool() -> dict[str, str]:
    """The pool of two fake Minis in one swarm. Missing: a failure under CI, a skip elsewhere."""
    _rig_used()
    values = pool_values()
    problem = "" if values else f"the pool is not up ({POOL_ENV} missing): run `bash tests/rig/up.sh` as root"
    if values:
        nodes = on_node(values, 1, "docker node ls --format '{{.Hostname}} {{.Status}} {{.Availability}}'", check=False)
        if nodes.count("Ready Active") < 2:
            problem = f"the pool's swarm is not whole ({nodes.strip()!r}): run `bash tests/rig/up.sh`"
    if problem:
        _unavailable(problem)
    assert values is not None
    return values


@pytest.fixture(scope="session")
def dask_rig() -> Iterator[dict[str, str]]:
    """The Dask pool of two Mac-like Minis, both workers registered. Missing: a failure under CI, a skip elsewhere."""
    _rig_used()
    from support import dask_values

    values = dask_values()
    problem = "" if values else "the Dask pool is not up (dask.env missing): run `bash tests/rig/up.sh` as root"
    if values:
        try:
            from mm4watch.remote.dask_pool import Pool

            with Pool(values["DASK_SCHEDULER"], tls=dask_tls(values)) as pool:
                names = sorted(w.name for w in pool.workers() if w.resources.get("mps"))
            if names != ["mac-1", "mac-2"]:
                problem = f"the Dask pool is not whole (workers {names}): run `bash tests/rig/dask.sh`"
        except Exception as exc:  # noqa: BLE001 (any failure to reach it is the rig's, said)
            problem = f"the Dask scheduler does not answer ({exc}): run `bash tests/rig/dask.sh`"
    if problem:
        _unavailable(problem)
    assert values is not None
    yield values
    from mm4watch.core.errors import Mm4Error
    from mm4watch.remote.dask_agent import AgentPool

    try:
        with AgentPool(
            values["DASK_SCHEDULER"], dask_tls(values)
        ) as agent:  # this machine's agent for the rig: not left behind
            os.kill(agent.agent_pid, signal.SIGTERM)
    except Mm4Error:
        pass  # the scheduler is gone: so is the agent


@pytest.fixture
def dask_pool(dask_rig: dict[str, str]) -> Iterator[dict[str, str]]:
    """The Dask pool, and after the test: no lease left on any worker (a run's end frees its slot)."""
    yield dask_rig
    from support import wait_idle

    from mm4watch.remote.dask_pool import Pool

    for n in (1, 2):  # a test that killed a worker brings it back
        if (
            "dask worker"
            not in subprocess.run(
                ["docker", "exec", f"mm4-dask-{n}", "ps", "-eo", "args"], capture_output=True, text=True
            ).stdout
        ):
            subprocess.run(["bash", str(REPO / "tests" / "rig" / "dask.sh"), "worker", str(n)], check=True)
    with Pool(dask_rig["DASK_SCHEDULER"], tls=dask_tls(dask_rig)) as pool:
        held = wait_idle(pool, timeout=15)
    assert held == {}, f"leases still held after the test: {held}"


def container_project(tmp_path: Path, toml: str) -> Path:
    """A project with the test Dockerfile and ``toml`` as its mm4.toml, at a path no earlier session had
    (pytest's numbered folders repeat once /tmp is emptied): its project key, and so its images and its
    folder on the Minis, are new."""
    root = tmp_path / uuid.uuid4().hex[:8] / "proj"
    (root / "notebooks").mkdir(parents=True)
    (root / "Dockerfile").write_text(TEST_DOCKERFILE)
    (root / "requirements.txt").write_text("# nothing beyond papermill\n")
    (root / "mm4.toml").write_text(toml)
    # content no earlier test run had, so the first run builds a new image (a new code layer)
    (root / "marker.txt").write_text(uuid.uuid4().hex)
    return root


@pytest.fixture
def mini_project(tmp_path: Path, mini: dict[str, str]) -> Path:
    """A project whose runs go to the fake Mini."""
    return container_project(tmp_path, mini_toml(mini))
