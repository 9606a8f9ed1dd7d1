"""A Mini that goes away mid-run (its container stopped, as a power cut, then started again, as the
reboot after it): the run ends in words, what it wrote comes home, and it runs again once."""

import contextlib
import json
import os
import subprocess
import time
from datetime import datetime

import pytest
from conftest import (
    TEST_DOCKERFILE,
    code,
    communicate,
    load_record,
    mini_toml,
    mm4_background,
    run_dirs,
    wait_beside,
    write_notebook,
)
from test_results_chain import native_project

pytestmark = pytest.mark.usefixtures("kernel")


def _cut(container, seconds, meanwhile=lambda: None):
    """A stand-in Mini's power cut for ``seconds`` (its container stopped at once), then its restart."""
    subprocess.run(["docker", "stop", "-t", "0", container], check=True, capture_output=True)
    time.sleep(seconds)
    meanwhile()
    subprocess.run(["docker", "start", container], check=True, capture_output=True)
    return time.time()


def test_a_power_cut_during_a_cell_ends_in_words_brings_home_what_was_written_and_runs_again(mini_project, mini):
    (mini_project / "mm4.toml").write_text(
        mini_toml(mini, extra='data = "/srv/mm4-away-data"\nsync_data = true\nharvest_every = "10m"\n')
    )
    first, back = _cut_in_cell_2(mini_project, mini["MINI_CONTAINER"])
    lost, retry = _one_lost_and_its_retry(mini_project, first, back, "mini")
    shown = subprocess.run(
        ["python", "-m", "mm4watch", "show", lost["id"]], cwd=mini_project, capture_output=True, text=True
    )
    assert "retried by" in shown.stdout and retry["id"] in shown.stdout, shown.stdout
    history = subprocess.run(["python", "-m", "mm4watch", "history"], cwd=mini_project, capture_output=True, text=True)
    assert "interrupted (retried)" in history.stdout and "(retry)" in history.stdout, history.stdout
    assert json.loads((first / "run.json").read_text())["id"] == lost["id"]


def _log(run_dir):
    try:
        return (run_dir / "run.log").read_text(errors="replace")
    except OSError:
        return ""


def test_a_power_cut_on_the_native_mini_ends_in_words_brings_home_what_was_written_and_runs_again(tmp_path, mac):
    """The Mac-like Mini (native executor) loses power while a cell runs and starts again 30 s later:
    its boot time says it restarted; the run's folder there comes home; the retry syncs the data that
    changed meanwhile into the mirror the first run left read-only."""
    project = _native_project(tmp_path, mac, f'data = "/home/me/mm4-away-data-{tmp_path.name}"\nsync_data = true\n')
    first, back = _cut_in_cell_2(project, mac["MAC_CONTAINER"])
    _one_lost_and_its_retry(project, first, back, "gpu")


def _cut_in_cell_2(project, container):
    """Runs ``_notebook()`` and cuts the Mini's power for 30 s while its cell 2 waits for data/go.txt,
    which is written meanwhile; once the run and its retry ended: the first run's folder, and when the
    Mini was started again."""
    (project / "data").mkdir()
    (project / "data" / "table.csv").write_text("a\n1\n")
    write_notebook(project / "notebooks" / "away.ipynb", *_notebook())
    child = mm4_background(["run", "notebooks/away.ipynb"], project)
    first = wait_beside(
        child,
        lambda: next((d for d in run_dirs(project) if "Executing Cell 2" in _log(d)), None),
        timeout=600,
        what="cell 2 to start on the Mini",
    )
    back = _cut(container, 30, lambda: (project / "data" / "go.txt").write_text("go"))
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err
    return first, back


def _notebook():
    return (
        code(
            "# mm4: remote\nimport os, pathlib, time\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])\n"
            "for i in range(12):\n    (out / f'part{i}.txt').write_text(str(i))"
        ),
        # waits for a file the test puts in data/ while the Mini is away (the retry's sync sends it)
        code(
            "t0 = time.time()\nwhile not pathlib.Path('../data/go.txt').exists() and time.time() - t0 < 300:\n    time.sleep(0.2)"
        ),
        code("(out / 'done.txt').write_text('done')"),
    )


def _one_lost_and_its_retry(project, first, back, name):
    """The run lost with words, what it wrote home, and exactly one retry that succeeded."""
    dirs = run_dirs(project)
    assert len(dirs) == 2, [d.name for d in dirs]  # the run and its one retry: no duplicate
    lost, retry = load_record(first), load_record(next(d for d in dirs if d != first))
    assert lost["status"] == "interrupted" and lost["error"]["ename"] == "MiniLost", lost["error"]
    said = lost["error"]["evalue"]
    assert said.startswith(f"{name} went away at ") and "while cell 2 ran" in said and "restarted" in said, said
    assert "it answered again at" in said and len(said) < 400 and "Error" not in said, said
    assert lost["error"]["cell"] == 2
    assert sorted(p.name for p in first.glob("part*.txt")) == sorted(f"part{i}.txt" for i in range(12))
    assert {o["path"] for o in lost["outputs"]} >= {f"part{i}.txt" for i in range(12)}
    assert lost["retried_by"] == retry["id"] and retry["retry_of"] == lost["id"]
    assert retry["status"] == "succeeded" and (dirs[-1] / "done.txt").read_text() == "done"
    started = datetime.fromisoformat(retry["started_at"]).timestamp()
    print(f"the retry started {started - back:.1f} s after the Mini was started again")
    assert started - back < 90  # within a probe's 30 s of its return, its engine's start and the build check
    return lost, retry


def test_a_power_cut_during_the_build_waits_for_the_mini_and_runs_again(mini_project, mini):
    """The Mini goes away while the image builds (nothing ran yet): the run ends `interrupted` in words
    once the Mini answers again, and the one retry builds and runs."""
    (mini_project / "Dockerfile").write_text(TEST_DOCKERFILE + "RUN echo slow-step && sleep 20\n")
    write_notebook(
        mini_project / "notebooks" / "built.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib\n(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'done.txt').write_text('done')"
        ),
    )
    child = mm4_background(["run", "notebooks/built.ipynb"], mini_project)
    first = wait_beside(
        child,
        lambda: next((d for d in run_dirs(mini_project) if "slow-step" in (d / "build.log").read_text()), None),
        timeout=600,
        what="the build's slow step",
    )
    back = _cut(mini["MINI_CONTAINER"], 30)
    out, err = child.communicate(timeout=900)
    assert child.returncode == 0, err
    dirs = run_dirs(mini_project)
    assert len(dirs) == 2, [d.name for d in dirs]
    lost, retry = load_record(first), load_record(next(d for d in dirs if d != first))
    assert lost["status"] == "interrupted" and lost["error"]["ename"] == "MiniLost", lost["error"]
    said = lost["error"]["evalue"]
    assert said.startswith("mini went away at ") and " while building on " in said, said
    assert "it answered again at" in said and len(said) < 400, said
    assert lost["retried_by"] == retry["id"] and retry["retry_of"] == lost["id"]
    assert retry["status"] == "succeeded" and (dirs[-1] / "done.txt").read_text() == "done"
    started = datetime.fromisoformat(retry["started_at"]).timestamp()
    print(f"the retry started {started - back:.1f} s after the Mini was started again")
    assert started - back < 90


def test_a_cut_while_the_results_come_home_brings_them_once_the_mini_is_back(tmp_path, mac):
    """The native run ended; the Mini goes away while its results come home: once it answers again
    they all come, the run keeps its own outcome, and it is not run again."""
    _cut_while_results_come_home(_native_project(tmp_path, mac), mac["MAC_CONTAINER"])


def test_a_cut_while_a_docker_runs_results_come_home_brings_them_once_the_mini_is_back(mini_project, mini):
    """The same on the docker Mini: the run's exited container outlives the Mini's restart, and its
    files come from it."""
    (mini_project / "mm4.toml").write_text(mini_toml(mini, extra='harvest_every = "10m"\n'))
    _cut_while_results_come_home(mini_project, mini["MINI_CONTAINER"])


def _cut_while_results_come_home(project, container):
    """A run that writes 40 MB, its Mini's link slowed to 40 Mbit/s (the transfer takes seconds), the
    Mini's power cut for 20 s while the results come home: one run, succeeded, every byte home."""
    write_notebook(
        project / "notebooks" / "big.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])\n"
            "(out / 'big.bin').write_bytes(os.urandom(40_000_000))\n(out / 'small.txt').write_text('ok')"
        ),
    )
    with _slow_link(container, toward_the_mini=False):
        child = mm4_background(["run", "notebooks/big.ipynb"], project)
        wait_beside(
            child,
            lambda: "bringing results home" in (_phase(project) or ""),
            timeout=600,
            what="results on their way home",
        )
        back = _cut(container, 20)  # started again: a new link, not slowed
    out, err = communicate(child, 600)
    assert child.returncode == 0, err
    (run_dir,) = run_dirs(project)  # not run again
    record = load_record(run_dir)
    assert record["status"] == "succeeded", record.get("error")
    assert (run_dir / "big.bin").stat().st_size == 40_000_000 and (run_dir / "small.txt").read_text() == "ok"
    log = _log(run_dir)
    assert "went away while the results came home" in log and "retry" not in err, log[-2000:]
    print(f"results home {time.time() - back:.1f} s after the Mini was started again")


def test_a_cut_while_the_code_goes_to_the_native_mini_waits_for_it_and_runs_again(tmp_path, mac):
    """The Mini goes away while the run's code is sent there (40 MB of it, the link toward the Mini
    slowed): nothing ran; the run ends in words once the Mini answers, and its one retry runs."""
    project = _native_project(tmp_path, mac)
    (project / "blob.bin").write_bytes(os.urandom(40_000_000))  # part of the code the run ships
    write_notebook(
        project / "notebooks" / "sent.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib\n(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'done.txt').write_text('done')"
        ),
    )
    with _slow_link(mac["MAC_CONTAINER"], toward_the_mini=True):
        child = mm4_background(["run", "notebooks/sent.ipynb"], project)
        wait_beside(
            child, lambda: "syncing code to" in (_phase(project) or ""), timeout=600, what="the code on its way"
        )
        time.sleep(1.0)
        back = _cut(mac["MAC_CONTAINER"], 20)
    out, err = communicate(child, 600)
    assert child.returncode == 0, err
    dirs = run_dirs(project)
    assert len(dirs) == 2, [d.name for d in dirs]
    lost, retry = load_record(dirs[0]), load_record(dirs[1])
    said = lost["error"]["evalue"]
    assert lost["status"] == "interrupted" and lost["error"]["ename"] == "MiniLost", lost["error"]
    assert said.startswith("gpu went away at ") and " while syncing code to " in said, said
    assert "it answered again at" in said and len(said) < 400, said
    assert lost["retried_by"] == retry["id"] and retry["status"] == "succeeded"
    assert (dirs[1] / "done.txt").read_text() == "done"
    started = datetime.fromisoformat(retry["started_at"]).timestamp()
    print(f"the retry started {started - back:.1f} s after the Mini was started again")
    assert started - back < 90


@contextlib.contextmanager
def _slow_link(container, toward_the_mini):
    """The stand-in Mini's link slowed to 40 Mbit/s one way (tc on its side of the veth pair for what it
    sends, on this machine's side for what it receives); back to the rig's 1 Gbit/s after (a Mini
    started again has a new link, as the rig's own is not shaped then)."""
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container], capture_output=True, text=True, check=True
    ).stdout.strip()
    if toward_the_mini:
        peer = subprocess.run(
            ["docker", "exec", container, "cat", "/sys/class/net/eth0/iflink"], capture_output=True, text=True
        ).stdout.strip()
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
        name = next(line.split(": ")[1].split("@")[0] for line in links.splitlines() if line.split(": ")[0] == peer)
        tc = ["tc", "qdisc", "replace", "dev", name, "root", "tbf"]
    else:
        tc = ["nsenter", "-t", pid, "-n", "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf"]
    subprocess.run([*tc, "rate", "40mbit", "burst", "32kb", "latency", "400ms"], check=True)
    try:
        yield
    finally:
        subprocess.run([*tc, "rate", "1gbit", "burst", "256kb", "latency", "5ms"], check=False, capture_output=True)


def _native_project(tmp_path, mac, extra=""):
    """A native project whose runs may take 10 minutes, with no harvest while they run."""
    return native_project(tmp_path, mac, 'harvest_every = "10m"\n' + extra, timeout="10m")


def _phase(project):
    """What the project's one running run says it is doing (`mm4watch status`'s phase)."""
    phases = list((project / ".mm4").rglob("*.phase"))
    return phases[0].read_text().strip() if phases else None
