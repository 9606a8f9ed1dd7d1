"""The Swarm executor on the rig's pool: two fake Minis (each its own Docker engine, reached
only over SSH) in one swarm, with a registry on the first. Real services, real placement,
real node failures (a node's container killed), real kernels.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    code,
    container_project,
    load_record,
    mm4,
    mm4_background,
    on_node,
    pool_toml,
    run_dirs,
    status_of,
    wait_for,
    write_notebook,
)
from support import REPO
from test_daemon import _entry_pid, daemon_pid, entries

from mm4watch.results.records import FINAL_STATUSES as ENDED

pytestmark = [pytest.mark.usefixtures("kernel"), pytest.mark.timeout(600)]
DAEMON = '\n[daemon]\ndebounce = "0.5s"\nnotify = false\n'
FACTS = (
    "import os, json, pathlib, time\n"
    "out = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])\n"
    "status = dict(l.split(':\\t', 1) for l in pathlib.Path('/proc/self/status').read_text().splitlines() if ':\\t' in l)\n"
    "(out / 'facts.json').write_text(json.dumps({'uid': os.getuid(), 'nnp': status['NoNewPrivs'].strip(),\n"
    "    'cap': status['CapEff'].strip(), 'cwd': os.getcwd()}))\n"
)


@pytest.fixture
def pool_project(tmp_path: Path, pool: dict[str, str]) -> Any:
    root = container_project(tmp_path, pool_toml(pool))
    yield root
    mm4(["stop", "--now"], cwd=root)


def _services(pool: dict[str, str], project: Path) -> list[str]:
    from mm4watch.core import config

    label = f"mm4watch.project={config.load(project).image_name}"
    return on_node(pool, 1, f"docker service ls -q --filter label={label}").split()


def _node(run_dir: Path) -> str:
    return str(load_record(run_dir)["executor"]["node"]["hostname"])


def _placed(run_dir: Path, node: str = "") -> bool:
    try:
        log = (run_dir / "run.log").read_text()
    except FileNotFoundError:
        return False
    return f"placed on {node}" in log and "Executing Cell" in log


def _crash_while_running(project: Path, notebook: str) -> Path:
    """Queue ``notebook``, let the daemon start it on the pool, then kill -9 the daemon and the run's
    process (this machine "crashed"); the run's folder."""
    assert mm4(["run", "--queue", notebook], cwd=project).returncode == 0
    assert mm4(["start"], cwd=project).returncode == 0
    run_dir = wait_for(lambda: [d for d in run_dirs(project) if _placed(d)], timeout=240, what="the run")[0]
    entry = wait_for(lambda: [e for e in entries(project) if e["run_id"] == run_dir.name], what="entry")[0]
    os.kill(daemon_pid(project), signal.SIGKILL)
    os.kill(_entry_pid(project, entry["id"]), signal.SIGKILL)
    return run_dir


def test_runs_spread_over_both_nodes_and_results_come_home_from_each(pool_project, pool):
    (pool_project / "mm4.toml").write_text(pool_toml(pool) + DAEMON)
    for n in range(4):
        write_notebook(pool_project / "notebooks" / f"n{n}.ipynb", code("# mm4: remote\n" + FACTS + "time.sleep(6)"))
        done = mm4(["run", "--queue", f"notebooks/n{n}.ipynb"], cwd=pool_project)
        assert done.returncode == 0, done.stderr
    assert mm4(["start"], cwd=pool_project).returncode == 0
    # the daemon runs one per ready node at once; status says which node runs what
    wait_for(
        lambda: mm4(["status"], cwd=pool_project).stdout.count(": on fake-mini-") == 2,
        timeout=300,
        what="two runs at once, one per node",
        every=0.5,
    )
    wait_for(
        lambda: len(run_dirs(pool_project)) == 4 and all(status_of(d) in ENDED for d in run_dirs(pool_project)),
        timeout=300,
        what="four runs",
    )
    dirs = run_dirs(pool_project)
    assert [status_of(d) for d in dirs] == ["succeeded"] * 4, [load_record(d).get("error") for d in dirs]
    # the two runs started together took turns: one built and pushed, the other found both done
    logs = [(d / "build.log").read_text() for d in dirs]
    assert sum(log.startswith("building ") for log in logs) == 1, logs
    assert all(" 0 layers sent" in log for log in logs if not log.startswith("building ")), logs
    assert {_node(d) for d in dirs} == {"fake-mini-1", "fake-mini-2"}
    for d in dirs:
        record = load_record(d)
        node = record["executor"]["node"]
        assert node["arch"] and node["engine_version"] and record["executor"]["service"]
        assert record["executor"]["image"].startswith(pool["POOL_REGISTRY"] + "/")
        facts = json.loads((d / "facts.json").read_text())
        assert facts == {"uid": 1000, "nnp": "1", "cap": "0000000000000000", "cwd": "/project/notebooks"}
        assert (d / "executed.ipynb").is_file()
        assert record["environment"]["packages"] > 10 and (d / "environment.txt").read_text().startswith("# python ")
    assert _services(pool, pool_project) == []  # every service removed
    for d in dirs:  # and every task's container on the nodes
        key = load_record(d)["key"]
        assert [on_node(pool, n, f"docker ps -aq --filter label=mm4watch.run={key}") for n in (1, 2)] == ["", ""]


def test_a_constraint_pins_a_run_and_a_code_change_pushes_only_the_code_layer(pool_project, pool):
    write_notebook(
        pool_project / "notebooks" / "pin.ipynb",
        code("# mm4: remote constraint=node.hostname==fake-mini-2\nprint(open('helper.txt').read())"),
    )
    (pool_project / "notebooks" / "helper.txt").write_text("first")
    runs = []
    for text in ("first", "second"):
        (pool_project / "notebooks" / "helper.txt").write_text(text)
        done = mm4(["run", "notebooks/pin.ipynb"], cwd=pool_project)
        assert done.returncode == 0, done.stderr
        runs.append(Path(done.stdout.strip().splitlines()[-1]))
    assert [_node(r) for r in runs] == ["fake-mini-2", "fake-mini-2"]
    assert "second" in (runs[1] / "run.log").read_text()
    pushed = [line for line in (runs[1] / "build.log").read_text().splitlines() if line.startswith("pushed ")]
    # only the layer with the project's code travels; papermill's and the base layers are there
    assert len(pushed) == 1 and ": 1 layers sent," in pushed[0], pushed
    assert int(pushed[0].split(", ")[1].split()[0]) >= 3
    # two builds, two images on the manager: gc keeps the newest
    done = mm4(["gc", "--keep", "1"], cwd=pool_project)
    assert done.returncode == 0, done.stderr
    assert "kept the newest 1 image(s)" in done.stdout and "on pool; removed 2" in done.stdout, (
        done.stdout
    )  # both its names
    # a constraint in mm4.toml, Swarm's own syntax
    (pool_project / "mm4.toml").write_text(pool_toml(pool, extra='constraints = ["node.hostname==fake-mini-1"]\n'))
    write_notebook(pool_project / "notebooks" / "free.ipynb", code("# mm4: remote\nx = 1"))
    done = mm4(["run", "notebooks/free.ipynb"], cwd=pool_project)
    assert done.returncode == 0, done.stderr
    assert _node(Path(done.stdout.strip().splitlines()[-1])) == "fake-mini-1"
    # a constraint no node meets: a failed run that says so, not a wait forever
    write_notebook(pool_project / "notebooks" / "nowhere.ipynb", code("# mm4: remote constraint=node.labels.gpu==mps"))
    done = mm4(["run", "notebooks/nowhere.ipynb"], cwd=pool_project)
    assert done.returncode == 1
    record = load_record(Path(done.stdout.strip().splitlines()[-1]))
    assert record["error"]["ename"] == "SwarmRefused" and "constraint" in record["error"]["evalue"]
    assert _services(pool, pool_project) == []


def test_a_node_lost_mid_run_ends_that_run_as_node_lost_while_the_other_succeeds(pool_project, pool):
    write_notebook(
        pool_project / "notebooks" / "doomed.ipynb",
        code("# mm4: remote constraint=node.hostname==fake-mini-2\n" + FACTS + "time.sleep(300)"),
    )
    write_notebook(
        pool_project / "notebooks" / "fine.ipynb",
        code("# mm4: remote constraint=node.hostname==fake-mini-1\n" + FACTS + "time.sleep(25)"),
    )
    doomed = mm4_background(["run", "notebooks/doomed.ipynb"], cwd=pool_project)
    fine = mm4_background(["run", "notebooks/fine.ipynb"], cwd=pool_project)
    try:
        wait_for(
            lambda: [d for d in run_dirs(pool_project) if d.name.startswith("doomed") and _placed(d, "fake-mini-2")],
            timeout=240,
            what="the doomed run on fake-mini-2",
        )
        subprocess.run(["docker", "kill", "mm4-pool-2"], check=True, capture_output=True)
        out, err = doomed.communicate(timeout=240)
        assert doomed.returncode == 1, err
        fine.communicate(timeout=240)
        assert fine.returncode == 0
    finally:
        for child in (doomed, fine):
            if child.poll() is None:
                child.kill()
        subprocess.run(["bash", str(REPO / "tests" / "rig" / "pool.sh")], check=True, capture_output=True)
    (lost,) = [d for d in run_dirs(pool_project) if d.name.startswith("doomed")]
    (ok,) = [d for d in run_dirs(pool_project) if d.name.startswith("fine")]
    record = load_record(lost)
    assert record["status"] == "failed" and record["error"]["ename"] == "NodeLost"
    assert "fake-mini-2" in record["error"]["evalue"]
    assert load_record(ok)["status"] == "succeeded" and _node(ok) == "fake-mini-1"
    assert (lost / "executed.ipynb").is_file()  # the input is kept beside the error
    wait_for(lambda: _services(pool, pool_project) == [], timeout=60, what="the services removed")


def test_with_retries_a_run_whose_node_is_lost_runs_again_on_another(pool_project, pool):
    (pool_project / "mm4.toml").write_text(pool_toml(pool, extra="retries = 1\n"))
    write_notebook(
        pool_project / "notebooks" / "again.ipynb",
        code("# mm4: remote\n" + FACTS + "time.sleep(15)\n(out / 'final.txt').write_text('made it')"),
    )
    on_node(pool, 1, "docker node update --availability drain fake-mini-1")  # the first attempt goes to fake-mini-2
    child = mm4_background(["run", "notebooks/again.ipynb"], cwd=pool_project)
    try:
        run_dir = wait_for(
            lambda: [d for d in run_dirs(pool_project) if _placed(d, "fake-mini-2")], timeout=240, what="the run"
        )[0]
        on_node(pool, 1, "docker node update --availability active fake-mini-1")
        subprocess.run(["docker", "kill", "mm4-pool-2"], check=True, capture_output=True)
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    finally:
        on_node(pool, 1, "docker node update --availability active fake-mini-1", check=False)
        if child.poll() is None:
            child.kill()
        subprocess.run(["bash", str(REPO / "tests" / "rig" / "pool.sh")], check=True, capture_output=True)
    record = load_record(run_dir)
    assert record["status"] == "succeeded" and record["executor"]["node"]["hostname"] == "fake-mini-1"
    assert record["executor"]["lost_nodes"] == ["fake-mini-2"]
    assert (run_dir / "final.txt").read_text() == "made it"
    # the lost node is named by its ID too: hostnames can repeat in a pool
    lost = re.search(
        r"fake-mini-2 \((\w{12})\) was lost: running again on another node \(retry 1 of 1\)",
        text := (run_dir / "run.log").read_text(),
    )
    assert lost, text
    ids = on_node(pool, 1, "docker node ls -q --filter name=fake-mini-2").split()
    assert any(node_id.startswith(lost.group(1)) for node_id in ids), (lost.group(1), ids)
    assert run_dirs(pool_project) == [run_dir]
    wait_for(lambda: _services(pool, pool_project) == [], timeout=60, what="the services removed")


def test_the_daemon_re_attaches_to_a_running_service_after_a_crash(pool_project, pool):
    (pool_project / "mm4.toml").write_text(pool_toml(pool) + DAEMON)
    write_notebook(
        pool_project / "notebooks" / "long.ipynb",
        code("# mm4: remote\n" + FACTS + "time.sleep(12)\n(out / 'final.txt').write_text('made it')"),
    )
    run_dir = _crash_while_running(pool_project, "notebooks/long.ipynb")
    time.sleep(0.5)
    assert load_record(run_dir)["status"] == "running"
    assert len(_services(pool, pool_project)) == 1  # the run goes on in the swarm
    assert mm4(["start"], cwd=pool_project).returncode == 0
    wait_for(lambda: status_of(run_dir) == "succeeded", timeout=180, what="the re-attached run")
    record = load_record(run_dir)
    assert record["executor"]["reattached"] is True and record["executor"]["service"]
    assert (run_dir / "final.txt").read_text() == "made it"
    assert run_dirs(pool_project) == [run_dir]
    assert _services(pool, pool_project) == []


def test_a_run_that_ended_while_nothing_watched_is_brought_home(pool_project, pool):
    (pool_project / "mm4.toml").write_text(pool_toml(pool) + DAEMON)
    write_notebook(
        pool_project / "notebooks" / "quick.ipynb",
        code("# mm4: remote\n" + FACTS + "time.sleep(4)\n(out / 'final.txt').write_text('made it')"),
    )
    run_dir = _crash_while_running(pool_project, "notebooks/quick.ipynb")
    # the task ends while nothing on this machine follows it; its service (and container) stay
    wait_for(
        lambda: (
            "Complete"
            in on_node(
                pool, 1, f"docker service ps --format '{{{{.CurrentState}}}}' {_services(pool, pool_project)[0]}"
            )
        ),
        timeout=60,
        what="the task to complete",
    )
    assert mm4(["start"], cwd=pool_project).returncode == 0
    wait_for(lambda: status_of(run_dir) == "succeeded", timeout=120, what="the re-attached run")
    assert (run_dir / "final.txt").read_text() == "made it"
    assert load_record(run_dir)["executor"]["reattached"] is True
    assert _services(pool, pool_project) == []


def test_cancel_and_timeout_remove_the_service_and_keep_partial_results(pool_project, pool):
    write_notebook(
        pool_project / "notebooks" / "c.ipynb",
        code("# mm4: remote\n" + FACTS + "(out / 'partial.txt').write_text('so far')\ntime.sleep(300)"),
    )
    child = mm4_background(["run", "notebooks/c.ipynb"], cwd=pool_project)
    run_dir = wait_for(lambda: [d for d in run_dirs(pool_project) if _placed(d)], timeout=240, what="the run")[0]
    time.sleep(1)
    assert mm4(["cancel", run_dir.name], cwd=pool_project).returncode == 0
    child.communicate(timeout=120)
    assert load_record(run_dir)["status"] == "cancelled"
    assert (run_dir / "partial.txt").read_text() == "so far"
    assert _services(pool, pool_project) == []

    write_notebook(
        pool_project / "notebooks" / "t.ipynb",
        code("# mm4: remote timeout=20s\n" + FACTS + "(out / 'partial.txt').write_text('so far')\ntime.sleep(300)"),
    )
    done = mm4(["run", "notebooks/t.ipynb"], cwd=pool_project)
    assert done.returncode == 1
    timed_out = Path(done.stdout.strip().splitlines()[-1])
    record = load_record(timed_out)
    assert record["status"] == "timeout" and record["error"]["ename"] == "Timeout"
    assert (timed_out / "partial.txt").read_text() == "so far"
    assert _services(pool, pool_project) == []


def test_doctor_checks_the_pool(pool_project, pool):
    done = mm4(["doctor"], cwd=pool_project)
    assert done.returncode == 0, done.stdout
    for line in (
        "ok    manager",
        "ok    registry: the manager pushes to",
        "ok    node fake-mini-1: ready, active",
        "ok    node fake-mini-2: ready, active",
        "ok    registry from fake-mini-2: pulls",
        "ok    results on fake-mini-1",
    ):
        assert line in done.stdout, done.stdout
    (pool_project / "mm4.toml").write_text(pool_toml(pool, registry="172.30.0.11:5999"))
    done = mm4(["doctor"], cwd=pool_project)
    assert done.returncode == 1 and "FAIL  registry: the manager cannot push to 172.30.0.11:5999" in done.stdout
    assert "insecure-registries" in done.stdout
    (pool_project / "mm4.toml").write_text(pool_toml(pool, manager="ssh://root@127.0.0.1:1"))
    done = mm4(["doctor"], cwd=pool_project)
    assert done.returncode == 1 and "FAIL  ssh" in done.stdout
    # an unreachable manager: nothing is made, exit 75 (the daemon holds the queue)
    write_notebook(pool_project / "notebooks" / "x.ipynb", code("# mm4: remote\nx = 1"))
    done = mm4(["run", "notebooks/x.ipynb"], cwd=pool_project)
    assert done.returncode == 75 and run_dirs(pool_project) == []
