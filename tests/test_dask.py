"""The dask executor on the rig's Dask pool: two Mac-like Minis (account me, zsh, sshd's minimal
PATH, no docker), a real scheduler, a real worker on each with mps=1; real leases, real ssh,
real kernels, real worker deaths (the worker's process killed). After each test no lease is left
on any worker (the ``dask_pool`` fixture).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import code, load_record, mm4, mm4_background, run_dirs, status_of, wait_for, write_notebook
from support import dask_tls, dask_toml, on_dask_node
from test_daemon import _entry_pid, daemon_pid, entries

pytestmark = [pytest.mark.usefixtures("kernel"), pytest.mark.timeout(600)]
DAEMON = '\n[daemon]\ndebounce = "0.5s"\nnotify = false\n'
WHERE = (
    "import os, pathlib, socket, time\n"
    "out = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])\n"
    "(out / 'host.txt').write_text(socket.gethostname())\n"
)


@pytest.fixture
def dask_project(tmp_path: Path, dask_pool: dict[str, str]) -> Any:
    root = tmp_path / "dproj"
    (root / "notebooks").mkdir(parents=True)
    (root / "requirements.txt").write_text("# nothing beyond papermill\n")
    (root / "mm4.toml").write_text(dask_toml(dask_pool))
    (root / "helper.py").write_text("GREETING = 'from the code folder'\n")
    yield root
    mm4(["stop", "--now"], cwd=root)


def leases(values: dict[str, str]) -> dict[str, tuple[str, ...]]:
    from mm4watch.remote.dask_pool import Pool

    with Pool(values["DASK_SCHEDULER"], tls=dask_tls(values)) as pool:
        return {a: k for a, k in pool.leases().items() if k}


def placed(run_dir: Path, node: str = "") -> bool:
    try:
        log = (run_dir / "run.log").read_text()
    except FileNotFoundError:
        return False
    return f"Dask placed it on {node}" in log and "Executing Cell" in log


def placed_at(run_dir: Path) -> str:
    """When Dask started the run's lease (its run.log line's time), as ISO text."""
    line = next(x for x in (run_dir / "run.log").read_text().splitlines() if "Dask placed it on" in x)
    return line[1 : line.index("]")]


def node_of(run_dir: Path) -> str:
    """The worker that runs it: its record's once it ended, its run.log's while it runs."""
    node = load_record(run_dir).get("executor", {}).get("node")
    if node:
        return str(node["name"])
    line = next(x for x in (run_dir / "run.log").read_text().splitlines() if "Dask placed it on" in x)
    return line.split("Dask placed it on ", 1)[1].split()[0]


def kill_worker(node: str) -> None:
    """The worker's process dies (kill -9): the scheduler loses it at once; the machine stays up."""
    n = node.rsplit("-", 1)[1]
    subprocess.run(["docker", "exec", f"mm4-dask-{n}", "pkill", "-9", "-f", "dask worker"], check=True)


def test_four_runs_two_at_once_on_both_workers_and_results_come_home_from_each(dask_project, dask_pool):
    (dask_project / "mm4.toml").write_text(dask_toml(dask_pool) + DAEMON)
    for n in range(4):
        write_notebook(
            dask_project / "notebooks" / f"n{n}.ipynb",
            code(
                "# mm4: remote\n"
                + WHERE
                + "import sys\nsys.path.insert(0, '..')\nfrom helper import GREETING\nprint(GREETING)\ntime.sleep(6)"
            ),
        )
        done = mm4(["run", "--queue", f"notebooks/n{n}.ipynb"], cwd=dask_project)
        assert done.returncode == 0, done.stderr
    assert mm4(["start"], cwd=dask_project).returncode == 0
    # one run per worker with mps=1 at once; status says which Mini runs what
    seen = wait_for(
        lambda: (out := mm4(["status"], cwd=dask_project).stdout).count(": on mac-") == 2 and out,
        timeout=300,
        what="two runs at once, one per worker",
        every=0.3,
    )
    assert "on mac-1" in seen and "on mac-2" in seen, seen
    assert len(leases(dask_pool)) == 2  # each holds its worker's slot
    wait_for(
        lambda: len(run_dirs(dask_project)) == 4 and all(status_of(d) == "succeeded" for d in run_dirs(dask_project)),
        timeout=300,
        what="four runs",
    )
    dirs = run_dirs(dask_project)
    assert {node_of(d) for d in dirs} == {"mac-1", "mac-2"}
    for d in dirs:
        record = load_record(d)
        ex = record["executor"]
        assert ex["type"] == "dask" and ex["scheduler"] == dask_pool["DASK_SCHEDULER"]
        # where it ran is the scheduler's word (its worker's address), the machine nodes lists for it
        assert ex["node"]["worker"].startswith("tls://172.30.0.2") and ex["python"].startswith("3.")
        assert ex["platform"] and ex["node"]["hostname"] == dask_pool["DASK_NODE" + ex["node"]["name"][-1]]
        assert ex["host"] == f"me@{dask_pool['DASK_NODE' + ex['node']['name'][-1]]}"
        assert (d / "host.txt").read_text() == ex["node"]["name"]  # it ran where the record says (mac-N is both)
        assert "from the code folder" in (d / "run.log").read_text()
        assert (d / "executed.ipynb").is_file()
        assert record["environment"]["python"] == ex["python"] and (d / "environment.txt").is_file()
    # never more than one run per worker at a time: from its placement to its end, no two overlap there
    for name in ("mac-1", "mac-2"):
        spans = sorted((placed_at(d), load_record(d)["finished_at"]) for d in dirs if node_of(d) == name)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), spans


def test_a_worker_lost_mid_run_ends_that_run_node_lost_while_the_other_succeeds(dask_project, dask_pool):
    for name, sleep in (("doomed", 300), ("fine", 20)):
        write_notebook(
            dask_project / "notebooks" / f"{name}.ipynb",
            code("# mm4: remote\n" + WHERE + "(out / 'partial.txt').write_text('so far')\n" + f"time.sleep({sleep})"),
        )
    doomed = mm4_background(["run", "notebooks/doomed.ipynb"], cwd=dask_project)
    (doomed_dir,) = wait_for(
        lambda: [d for d in run_dirs(dask_project) if d.name.startswith("doomed") and placed(d)],
        timeout=240,
        what="the doomed run",
    )
    fine = mm4_background(["run", "notebooks/fine.ipynb"], cwd=dask_project)
    try:
        (fine_dir,) = wait_for(
            lambda: [d for d in run_dirs(dask_project) if d.name.startswith("fine") and placed(d)],
            timeout=240,
            what="the other run",
        )
        wait_for(lambda: (doomed_dir / "partial.txt").exists(), timeout=60, what="a harvest of the doomed run")
        node = node_of(doomed_dir)
        assert node_of(fine_dir) != node  # its worker's slot was taken: the other worker
        kill_worker(node)
        _, err = doomed.communicate(timeout=120)
        assert doomed.returncode == 1, err
        _, err = fine.communicate(timeout=120)
        assert fine.returncode == 0, err
    finally:
        for child in (doomed, fine):
            if child.poll() is None:
                child.kill()
    record = load_record(doomed_dir)
    assert record["status"] == "failed" and record["error"]["ename"] == "NodeLost", record["error"]
    assert f"the worker {node}" in record["error"]["evalue"] and "left the pool" in record["error"]["evalue"]
    assert (doomed_dir / "partial.txt").read_text() == "so far"  # what came home is kept
    assert (doomed_dir / "executed.ipynb").is_file()
    assert load_record(fine_dir)["status"] == "succeeded"
    # the lost run was stopped there too: no runner of it is left on that Mini
    n = node.rsplit("-", 1)[1]
    assert f"runs/{record['key']}/" not in on_dask_node(int(n), "ps -eo args")


def test_with_retries_a_run_whose_worker_is_lost_finishes_on_the_other(dask_project, dask_pool):
    (dask_project / "mm4.toml").write_text(dask_toml(dask_pool, extra="retries = 1\n"))
    write_notebook(
        dask_project / "notebooks" / "again.ipynb",
        code("# mm4: remote\n" + WHERE + "time.sleep(15)\n(out / 'final.txt').write_text('made it')"),
    )
    child = mm4_background(["run", "notebooks/again.ipynb"], cwd=dask_project)
    try:
        (run_dir,) = wait_for(lambda: [d for d in run_dirs(dask_project) if placed(d)], timeout=240, what="the run")
        first = [line for line in (run_dir / "run.log").read_text().splitlines() if "Dask placed it on" in line][0]
        lost = "mac-1" if "on mac-1" in first else "mac-2"
        kill_worker(lost)
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    finally:
        if child.poll() is None:
            child.kill()
    other = {"mac-1": "mac-2", "mac-2": "mac-1"}[lost]
    record = load_record(run_dir)
    assert record["status"] == "succeeded" and node_of(run_dir) == other
    assert record["executor"]["lost_nodes"] == [lost]
    assert (run_dir / "final.txt").read_text() == "made it"
    assert (run_dir / "host.txt").read_text() == other
    assert f"{lost} (tls://" in (log := (run_dir / "run.log").read_text()) and "(retry 1 of 1)" in log, log
    assert run_dirs(dask_project) == [run_dir]


def test_the_daemon_re_attaches_after_a_crash_and_takes_the_slot_again(dask_project, dask_pool):
    (dask_project / "mm4.toml").write_text(dask_toml(dask_pool) + DAEMON)
    write_notebook(
        dask_project / "notebooks" / "long.ipynb",
        code("# mm4: remote\n" + WHERE + "time.sleep(14)\n(out / 'final.txt').write_text('made it')"),
    )
    assert mm4(["run", "--queue", "notebooks/long.ipynb"], cwd=dask_project).returncode == 0
    assert mm4(["start"], cwd=dask_project).returncode == 0
    (run_dir,) = wait_for(lambda: [d for d in run_dirs(dask_project) if placed(d)], timeout=240, what="the run")
    entry = wait_for(lambda: [e for e in entries(dask_project) if e["run_id"] == run_dir.name], what="entry")[0]
    before = leases(dask_pool)
    assert len(before) == 1
    os.kill(daemon_pid(dask_project), signal.SIGKILL)
    os.kill(_entry_pid(dask_project, entry["id"]), signal.SIGKILL)  # this machine "crashed"
    time.sleep(0.5)
    assert load_record(run_dir)["status"] == "running"
    assert mm4(["start"], cwd=dask_project).returncode == 0
    # the re-attached run holds its worker's slot again (a new lease pinned there; the old one let go)
    worker = next(iter(before))
    wait_for(
        lambda: (now := leases(dask_pool)) and list(now) == [worker] and now[worker] != before[worker],
        timeout=60,
        what="the slot taken again",
    )
    wait_for(lambda: status_of(run_dir) == "succeeded", timeout=180, what="the re-attached run")
    record = load_record(run_dir)
    assert record["executor"]["reattached"] is True and record["executor"]["node"]["worker"] == worker
    assert (run_dir / "final.txt").read_text() == "made it"
    assert run_dirs(dask_project) == [run_dir]
    assert not (dask_project / ".mm4" / "dask" / f"{record['key']}.json").exists()


def test_cancel_and_timeout_free_the_slot_and_keep_partial_results(dask_project, dask_pool):
    write_notebook(
        dask_project / "notebooks" / "c.ipynb",
        code("# mm4: remote\n" + WHERE + "(out / 'partial.txt').write_text('so far')\ntime.sleep(300)"),
    )
    child = mm4_background(["run", "notebooks/c.ipynb"], cwd=dask_project)
    (run_dir,) = wait_for(lambda: [d for d in run_dirs(dask_project) if placed(d)], timeout=240, what="the run")
    assert len(leases(dask_pool)) == 1
    time.sleep(1)
    assert mm4(["cancel", run_dir.name], cwd=dask_project).returncode == 0
    child.communicate(timeout=120)
    assert load_record(run_dir)["status"] == "cancelled"
    assert (run_dir / "partial.txt").read_text() == "so far"
    assert leases(dask_pool) == {}  # let go at once, not when the scheduler notices

    write_notebook(
        dask_project / "notebooks" / "t.ipynb",
        code("# mm4: remote timeout=8s\n" + WHERE + "(out / 'partial.txt').write_text('so far')\ntime.sleep(300)"),
    )
    done = mm4(["run", "notebooks/t.ipynb"], cwd=dask_project)
    assert done.returncode == 1
    timed_out = Path(done.stdout.strip().splitlines()[-1])
    record = load_record(timed_out)
    assert record["status"] == "timeout" and record["error"]["ename"] == "Timeout"
    assert (timed_out / "partial.txt").read_text() == "so far"
    assert leases(dask_pool) == {}


def test_a_scheduler_that_does_not_answer_exits_75_and_the_daemon_holds_the_queue(dask_project, dask_pool):
    nowhere = dask_toml(dask_pool, scheduler="tls://172.30.0.21:8799")
    (dask_project / "mm4.toml").write_text(nowhere)
    write_notebook(dask_project / "notebooks" / "w.ipynb", code("# mm4: remote\n" + WHERE))
    t0 = time.monotonic()
    done = mm4(["run", "notebooks/w.ipynb"], cwd=dask_project)
    assert done.returncode == 75, done.stderr
    assert "the Dask scheduler at tls://172.30.0.21:8799 does not answer" in done.stderr
    assert "dask scheduler" in done.stderr and time.monotonic() - t0 < 30
    assert run_dirs(dask_project) == []  # nothing ran: no folder
    # the daemon keeps the queued run until the scheduler answers
    (dask_project / "mm4.toml").write_text(nowhere + DAEMON)
    assert mm4(["run", "--queue", "notebooks/w.ipynb"], cwd=dask_project).returncode == 0
    assert mm4(["start"], cwd=dask_project).returncode == 0
    waiting = wait_for(lambda: [e for e in entries(dask_project) if e["last_error"]], timeout=60, what="a reason")[0]
    assert "does not answer" in waiting["last_error"] and waiting["state"] == "queued"
    assert run_dirs(dask_project) == [] and len(entries(dask_project)) == 1
    (dask_project / "mm4.toml").write_text(dask_toml(dask_pool) + DAEMON)  # the scheduler is found
    (run_dir,) = wait_for(lambda: run_dirs(dask_project), timeout=120, what="the held run")
    wait_for(lambda: status_of(run_dir) == "succeeded", timeout=240, what="the held run to end")
    assert entries(dask_project) == []


def test_doctor_checks_the_pool_and_each_mini(dask_project, dask_pool):
    done = mm4(["doctor"], cwd=dask_project)
    assert done.returncode == 0, done.stdout
    for line in (
        f"ok    scheduler: {dask_pool['DASK_SCHEDULER']} answers; dashboard {dask_pool['DASK_DASHBOARD']}",
        f"ok    dask versions: distributed {dask_pool['DASK_VERSION']} here, on the scheduler and on 2 worker(s)",
        "ok    worker mac-1: tls://172.30.0.21:",
        "ok    worker mac-2: tls://172.30.0.22:",
        "--    mac-2: over ssh to ssh://me@172.30.0.22",
        "ok    python: 3.",
        "ok    venv: can create virtual environments",
        "ok    free disk:",
    ):
        assert line in done.stdout, done.stdout
    assert done.stdout.count("ok    ssh: me@172.30.0.2") == 2
    # the rig's scheduler has no bokeh: its dashboard's page says so, and doctor says how to fix it
    assert "warn  dashboard: the scheduler's machine lacks bokeh: `pip install bokeh`" in done.stdout
    (dask_project / "mm4.toml").write_text(dask_toml(dask_pool, extra="resources = { gpu = 2 }\n"))
    done = mm4(["doctor"], cwd=dask_project)
    assert done.returncode == 1 and "FAIL  workers: no worker of the pool offers gpu=2" in done.stdout, done.stdout
    assert "--resources gpu=2" in done.stdout
    (dask_project / "mm4.toml").write_text(dask_toml(dask_pool, scheduler="tls://172.30.0.21:8799"))
    done = mm4(["doctor"], cwd=dask_project)
    assert done.returncode == 1 and "FAIL  scheduler: the Dask scheduler at tls://172.30.0.21:8799" in done.stdout


def test_settings_errors_name_the_key_and_line_and_a_missing_dask_names_the_extra(dask_project, dask_pool):
    base = dask_toml(dask_pool)
    write_notebook(dask_project / "notebooks" / "x.ipynb", code("# mm4: remote\nx = 1"))
    for extra, expected in (
        ('scheduler_x = "no"\n', "scheduler_x"),
        ("retries = -1\n", "retries"),
        ("resources = { mps = 0 }\n", "resources"),
        ('host = "ssh://me@mini"\n', "host"),
    ):
        (dask_project / "mm4.toml").write_text(base + extra)
        done = mm4(["run", "notebooks/x.ipynb"], cwd=dask_project)
        line = len((base + extra).splitlines())
        assert done.returncode == 2 and f"mm4.toml:{line}" in done.stderr and expected in done.stderr, done.stderr
    (dask_project / "mm4.toml").write_text(base.replace('"tls://172.30.0.21:8786"', '"http://172.30.0.21:8786"'))
    done = mm4(["run", "notebooks/x.ipynb"], cwd=dask_project)
    assert done.returncode == 2 and "scheduler" in done.stderr and "tls://" in done.stderr, done.stderr
    # without Dask on this machine: the extra to install, nothing made
    (dask_project / "mm4.toml").write_text(base)
    blocked = (
        "import sys; sys.modules['distributed'] = None\n"
        "from mm4watch.cli import main\nsys.exit(main(['run', 'notebooks/x.ipynb']))"
    )
    done = subprocess.run([sys.executable, "-c", blocked], cwd=dask_project, capture_output=True, text=True)
    assert done.returncode == 2 and 'pip install "mm4watch[dask]"' in done.stderr, done.stderr
    assert run_dirs(dask_project) == []


def test_capacity_is_one_run_per_worker_with_the_resources(dask_project, dask_pool):
    from mm4watch import executors
    from mm4watch.core import config

    cfg = config.load(dask_project)
    assert executors.get(cfg.executor(None), cfg).capacity() == 2
    (dask_project / "mm4.toml").write_text(dask_toml(dask_pool, extra="concurrency = 1\n"))
    cfg = config.load(dask_project)
    assert executors.get(cfg.executor(None), cfg).capacity() == 1
    (dask_project / "mm4.toml").write_text(dask_toml(dask_pool, extra="resources = { gpu = 1 }\n"))
    cfg = config.load(dask_project)
    assert executors.get(cfg.executor(None), cfg).capacity() == 1  # none has it: one at a time, Dask holds it
    assert json.loads(json.dumps(leases(dask_pool))) == {}


def test_runs_ask_one_agent_for_their_leases_and_a_run_outlives_a_killed_agent(dask_project, dask_pool):
    from support import wait_idle

    from mm4watch.remote.dask_agent import AgentPool, socket_path
    from mm4watch.remote.dask_pool import Pool

    scheduler = dask_pool["DASK_SCHEDULER"]
    write_notebook(dask_project / "notebooks" / "quick.ipynb", code("# mm4: remote\nx = 1"))
    agents = []
    for _ in range(2):
        assert mm4(["run", "notebooks/quick.ipynb"], cwd=dask_project).returncode == 0
        with AgentPool(scheduler, dask_tls(dask_pool)) as pool:
            agents.append(pool.agent_pid)
    assert agents[0] == agents[1]  # one client for both runs, still there after them
    assert (
        oct(socket_path(scheduler, dask_tls(dask_pool)).stat().st_mode & 0o777) == "0o700"
    )  # srwx------: this user's only
    write_notebook(
        dask_project / "notebooks" / "long.ipynb",
        code("# mm4: remote\n" + WHERE + "time.sleep(20)\n(out / 'final.txt').write_text('made it')"),
    )
    child = mm4_background(["run", "notebooks/long.ipynb"], cwd=dask_project)
    try:
        (run_dir,) = wait_for(
            lambda: [d for d in run_dirs(dask_project) if d.name.startswith("long") and placed(d)],
            timeout=240,
            what="the run",
        )
        assert len(leases(dask_pool)) == 1
        os.kill(agents[0], signal.SIGKILL)
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    finally:
        if child.poll() is None:
            child.kill()
    record = load_record(run_dir)
    assert record["status"] == "succeeded" and (run_dir / "final.txt").read_text() == "made it"
    log = (run_dir / "run.log").read_text()
    assert "the Dask agent for " + scheduler + " has stopped" in log, log
    assert "its slot asked for again there" in log, log
    with AgentPool(scheduler, dask_tls(dask_pool)) as pool:
        assert pool.agent_pid != agents[0]  # a new agent took over
    with Pool(
        scheduler, tls=dask_tls(dask_pool)
    ) as pool:  # the dead agent's lease ends by itself (its holder's semaphore expires)
        assert wait_idle(pool, timeout=90) == {}


def test_an_agent_nobody_uses_ends_by_itself_and_a_stopped_one_removes_its_socket(dask_pool):
    from mm4watch.remote.dask_agent import AgentPool, socket_path

    scheduler = dask_pool["DASK_SCHEDULER"]
    with AgentPool(scheduler, dask_tls(dask_pool)) as agent:
        pid = agent.agent_pid
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not socket_path(scheduler, dask_tls(dask_pool)).exists(), timeout=30, what="the socket gone")
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "mm4watch",
            "_helper",
            "dask",
            "dask-agent",
            scheduler,
            "--idle",
            "1",
            *dask_tls(dask_pool).args(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0 and "ended: nobody connected for 1s" in child.stdout, child.stdout + child.stderr
    assert not socket_path(scheduler, dask_tls(dask_pool)).exists()


# -- the pool lets no one in, and nothing from it is trusted ----------------------------------------


def test_the_pool_takes_no_client_without_a_certificate_its_ca_signed(dask_pool, tmp_path):
    from mm4watch.commands.pool import make
    from mm4watch.remote.dask_pool import Pool, PoolUnreachable, Tls

    scheduler = dask_pool["DASK_SCHEDULER"]
    with pytest.raises(PoolUnreachable):  # plain tcp to the TLS scheduler
        Pool(scheduler.replace("tls://", "tcp://"), timeout=5)
    other = make(tmp_path / "other")  # a CA of someone else's
    with pytest.raises(PoolUnreachable):
        Pool(scheduler, timeout=5, tls=Tls(str(other[0]), str(other[4]), str(other[5])))
    with Pool(scheduler, tls=dask_tls(dask_pool)) as pool:  # the pool's own certificate: in
        assert {w.name for w in pool.workers()} >= {"mac-1", "mac-2"}


def test_a_plain_tcp_scheduler_is_refused_unless_insecure_is_said(dask_project, dask_pool):
    write_notebook(dask_project / "notebooks" / "x.ipynb", code("# mm4: remote\nx = 1"))
    plain = dask_toml(dask_pool, scheduler=dask_pool["DASK_SCHEDULER"].replace("tls://", "tcp://"), tls=False)
    (dask_project / "mm4.toml").write_text(plain)
    done = mm4(["run", "notebooks/x.ipynb"], cwd=dask_project)
    assert done.returncode == 2 and "lets anyone on the network run code" in done.stderr, done.stderr
    assert "mm4watch pool certs" in done.stderr and run_dirs(dask_project) == []
    (dask_project / "mm4.toml").write_text(plain + "insecure = true\n")
    done = mm4(["run", "notebooks/x.ipynb"], cwd=dask_project)
    assert done.returncode == 75 and "does not answer" in done.stderr, done.stderr  # taken; the TLS pool says no
    mixed = dask_toml(dask_pool, scheduler=dask_pool["DASK_SCHEDULER"].replace("tls://", "tcp://"))
    (dask_project / "mm4.toml").write_text(mixed + "insecure = true\n")  # certificates for a plain scheduler
    done = mm4(["run", "notebooks/x.ipynb"], cwd=dask_project)
    assert done.returncode == 2 and "tls_ca, tls_cert and tls_key are set but the scheduler is tcp://" in done.stderr


class _Bomb:
    """What an insider's pickle would do when loaded: touch a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


def test_nothing_a_pool_member_writes_is_unpickled_or_followed(dask_project, dask_pool, tmp_path):
    import uuid

    from distributed import Event, Variable

    from mm4watch.remote.dask_pool import Pool

    gate = f"/tmp/mm4-gate-{uuid.uuid4().hex}"
    bomb = tmp_path / "unpickled"
    for name in ("a", "b", "c"):
        write_notebook(
            dask_project / "notebooks" / f"{name}.ipynb",
            code(f"# mm4: remote\nimport os, time\nwhile not os.path.exists({gate!r}):\n    time.sleep(0.2)"),
        )
    first = [mm4_background(["run", f"notebooks/{n}.ipynb"], cwd=dask_project) for n in ("a", "b")]
    third = None
    try:
        wait_for(lambda: sum(placed(d) for d in run_dirs(dask_project)) == 2, timeout=300, what="both workers busy")
        third = mm4_background(["run", "notebooks/c.ipynb"], cwd=dask_project)
        # an insider (a client with the pool's certificate) writes where the waiting lease would say where it runs
        with Pool(dask_pool["DASK_SCHEDULER"], tls=dask_tls(dask_pool)) as insider:
            busy = {k for keys in insider.busy().values() for k in keys}

            def waiting():
                keys = insider.client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])
                return [k for k in keys if k.startswith("mm4-lease") and ":" not in k and k not in busy]

            (lease,) = wait_for(waiting, timeout=60, what="the third run's lease, waiting")
            Variable(lease + ":at", client=insider.client).set(_Bomb(str(bomb)))
            Variable(lease + ":at", client=insider.client).set(
                {"worker": "tls://10.9.9.9:1", "name": "evil", "hostname": "attacker.example", "python": "3"}
            )
            Variable(lease + ":at", client=insider.client).set(_Bomb(str(bomb)))
            Event(lease + ":placed", client=insider.client).set()
        time.sleep(3)  # the third run's agent wakes to the event meanwhile
    finally:
        for n in (1, 2):
            on_dask_node(n, f"touch {gate}")
        for child in first:
            child.communicate(timeout=300)
    assert third is not None
    third.communicate(timeout=300)
    assert not bomb.exists(), "a value another client wrote was unpickled on this machine"
    for run_dir in run_dirs(dask_project):
        node = load_record(run_dir)["executor"].get("node") or {}
        assert node.get("name") in (None, "mac-1", "mac-2") and "attacker" not in json.dumps(load_record(run_dir))


def test_a_worker_from_the_launch_daemon_mm4watch_writes_joins_the_pool(dask_rig, tmp_path):
    """`mm4watch pool worker` writes a LaunchDaemon run as the Mini's user (exempt from Local Network
    Privacy, no login needed); its command, run as that user on a Mini, joins the TLS pool."""
    import plistlib
    import shlex

    from mm4watch.remote.dask_pool import Pool

    scheduler = dask_rig["DASK_SCHEDULER"]
    done = mm4(
        ["pool", "worker", "--scheduler", scheduler, "--name", "mac-plist", "--user", "me", "--home", "/home/me"],
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    job = plistlib.loads(done.stdout.encode())
    assert job["Label"] == "local.mm4watch.dask-worker" and job["UserName"] == "me"
    assert job["KeepAlive"] is True and job["RunAtLoad"] is True and job["ProcessType"] == "Interactive"
    assert job["EnvironmentVariables"]["HOME"] == "/home/me"
    assert "sudo launchctl bootstrap system /Library/LaunchDaemons/local.mm4watch.dask-worker.plist" in done.stderr
    argv = job["ProgramArguments"]
    assert argv[:3] == ["/home/me/dask/bin/dask", "worker", scheduler] and "--tls-key" in argv
    on_dask_node(2, f"cd /home/me && (setsid {shlex.join(argv)} >/home/me/plist-worker.log 2>&1 </dev/null &)")
    try:
        with Pool(scheduler, tls=dask_tls(dask_rig)) as pool:
            joined = wait_for(
                lambda: next((w for w in pool.workers() if w.name == "mac-plist"), None), 90, "the plist's worker"
            )
        assert joined.resources == {"mps": 1.0}
    finally:
        on_dask_node(2, "pkill -f 'dask worker .*--name mac-plist'; true")
    with Pool(scheduler, tls=dask_tls(dask_rig)) as pool:
        wait_for(lambda: all(w.name != "mac-plist" for w in pool.workers()), 60, "the plist's worker to leave")
