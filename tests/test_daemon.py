"""The watch daemon as a real process: real watchdog events, kill -9, restarts."""

import json
import os
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest
from conftest import (
    TEST_DOCKERFILE,
    code,
    decided,
    decisions,
    load_record,
    mini_toml,
    mm4,
    notebook_json,
    run_dirs,
    status_of,
    wait_for,
    write_notebook,
)

pytestmark = pytest.mark.usefixtures("kernel")


def jupyter_save(path: Path, text: str) -> None:
    """What Jupyter does: a .~ backup beside it, the file rewritten in place, a checkpoint."""
    backup = path.with_name(f".~{path.name}")
    if path.exists():
        shutil.copy(path, backup)
    with open(path, "w") as fh:  # in place: truncate, then write in pieces
        half = len(text) // 2
        fh.write(text[:half])
        fh.flush()
        fh.write(text[half:])
    checkpoints = path.parent / ".ipynb_checkpoints"
    checkpoints.mkdir(exist_ok=True)
    (checkpoints / f"{path.stem}-checkpoint.ipynb").write_text(text)
    backup.unlink(missing_ok=True)


def start_then_save(project, nb, *cells):
    """Start the daemon (it remembers ``nb`` as it is), then save ``nb`` with ``cells``."""
    assert mm4(["start"], cwd=project).returncode == 0  # returns once the daemon watches
    jupyter_save(nb, notebook_json(*cells))


def daemon_pid(project):
    info = json.loads((project / ".mm4" / "daemon.json").read_text())
    return int(info["pid"])


@pytest.fixture
def daemon_project(project):
    (project / "mm4.toml").write_text(
        '[run]\nexecutor = "local"\ntimeout = "2m"\n[daemon]\ndebounce = "0.5s"\nnotify = false\n'
    )
    yield project
    mm4(["stop", "--now"], cwd=project)
    for proc in psutil.process_iter():
        try:
            if proc.cwd() == str(project) and "mm4watch" in " ".join(proc.cmdline()):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def entries(project, *args):
    return json.loads(mm4(["queue", "--json", *args], cwd=project).stdout)


def test_lifecycle(daemon_project):
    assert "not running" in mm4(["status"], cwd=daemon_project).stdout
    started = mm4(["start"], cwd=daemon_project)
    assert started.returncode == 0 and "started" in started.stdout
    assert "already running" in mm4(["start"], cwd=daemon_project).stdout
    status = mm4(["status"], cwd=daemon_project).stdout
    assert "daemon: running" in status and "queue: empty" in status
    pid = daemon_pid(daemon_project)
    os.kill(pid, signal.SIGKILL)  # a stale pid file and lock must not block the next start
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, what="death")
    assert "not running" in mm4(["status"], cwd=daemon_project).stdout
    assert mm4(["start"], cwd=daemon_project).returncode == 0
    assert daemon_pid(daemon_project) != pid
    assert "stopped" in mm4(["stop"], cwd=daemon_project).stdout
    assert "not running" in mm4(["status"], cwd=daemon_project).stdout


def test_saves_queue_runs_only_when_code_changes(daemon_project):
    nb = daemon_project / "notebooks" / "t.ipynb"
    cells = [
        code("# mm4: remote\nimport os, pathlib"),
        code("n = 1", tags=["parameters"]),
        code("(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'n.txt').write_text(str(n))"),
    ]
    write_notebook(nb, *cells)
    untagged = write_notebook(daemon_project / "notebooks" / "plain.ipynb", code("x = 1"))
    mm4(["start"], cwd=daemon_project)  # existing notebooks are remembered at start, not run
    assert run_dirs(daemon_project) == []

    cells[1] = code("n = 2", tags=["parameters"])
    jupyter_save(nb, notebook_json(*cells))
    first = wait_for(lambda: [d for d in run_dirs(daemon_project) if status_of(d) == "succeeded"], what="a run")
    assert (first[0] / "n.txt").read_text() == "2"
    assert load_record(first[0])["trigger"] == "save"

    # saving again with only outputs and metadata changed queues nothing
    saved = json.loads(nb.read_text())
    saved["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi"}]
    saved["metadata"]["autosaved"] = True
    mark = len(decisions(daemon_project))
    jupyter_save(nb, json.dumps(saved))
    jupyter_save(untagged, notebook_json(code("x = 2")))  # not tagged: never runs
    (daemon_project / "notebooks" / "broken.ipynb").write_text('{"cells": [')  # the daemon survives it
    assert decided(daemon_project, ["notebooks/t.ipynb", "notebooks/plain.ipynb", "notebooks/broken.ipynb"], mark) == {
        "notebooks/t.ipynb": "unchanged",
        "notebooks/plain.ipynb": "untagged",
        "notebooks/broken.ipynb": "refused",
    }
    assert len(run_dirs(daemon_project)) == 1
    assert "daemon: running" in mm4(["status"], cwd=daemon_project).stdout
    log = (daemon_project / ".mm4" / "daemon.log").read_text()
    assert "not valid notebook JSON" in log

    # untagging stops future runs
    mark = len(decisions(daemon_project))
    jupyter_save(nb, notebook_json(code("import os"), code("n = 3", tags=["parameters"])))
    assert decided(daemon_project, "notebooks/t.ipynb", mark) == {"notebooks/t.ipynb": "untagged"}
    assert len(run_dirs(daemon_project)) == 1


def test_newer_save_supersedes_a_queued_one(daemon_project):
    blocker = write_notebook(
        daemon_project / "notebooks" / "blocker.ipynb", code("# mm4: remote\nimport time\ntime.sleep(1)")
    )
    nb = write_notebook(daemon_project / "notebooks" / "s.ipynb", code("# mm4: remote\nv = 0"))
    start_then_save(daemon_project, blocker, code("# mm4: remote\nimport time\ntime.sleep(8)"))
    wait_for(lambda: any(e["state"] == "claimed" for e in entries(daemon_project)), what="the blocker to run")
    for v in (1, 2, 3):
        jupyter_save(nb, notebook_json(code(f"# mm4: remote\nv = {v}\nprint('v is', v)")))
        time.sleep(0.8)
    waiting = [e for e in entries(daemon_project) if e["state"] == "queued"]
    assert [e["notebook"] for e in waiting] == ["notebooks/s.ipynb"]
    wait_for(
        lambda: len([d for d in run_dirs(daemon_project) if status_of(d) == "succeeded"]) == 2,
        timeout=90,
        what="both runs",
    )
    s_runs = [d for d in run_dirs(daemon_project) if d.name.startswith("s_")]
    assert len(s_runs) == 1 and "v is 3" in (s_runs[0] / "run.log").read_text()


def test_run_queue_and_stop_now_cancels(daemon_project):
    write_notebook(
        daemon_project / "notebooks" / "q.ipynb",
        code("# mm4: remote\nimport time"),
        code("n = 0", tags=["parameters"]),
        code("time.sleep(n)"),
    )
    done = mm4(["run", "--queue", "notebooks/q.ipynb", "-p", "n=60"], cwd=daemon_project)
    assert done.returncode == 0 and "the daemon is not running" in done.stdout
    assert [e["parameters"] for e in entries(daemon_project)] == [{"n": 60}]
    mm4(["start"], cwd=daemon_project)
    run_dir = wait_for(lambda: [d for d in run_dirs(daemon_project) if status_of(d) == "running"], what="the run")[0]
    status = mm4(["status"], cwd=daemon_project).stdout
    assert "running: notebooks/q.ipynb" in status and run_dir.name in status
    time.sleep(1.5)
    mm4(["stop", "--now"], cwd=daemon_project)
    wait_for(lambda: load_record(run_dir)["status"] == "cancelled", what="cancelled")
    assert load_record(run_dir)["parameters"] == {"n": 60}


def test_a_run_queued_to_an_idle_daemon_starts_at_once(daemon_project):
    """`run --queue` nudges the daemon (SIGUSR2): idle, it would look at its queue only each second."""
    from datetime import datetime

    write_notebook(daemon_project / "notebooks" / "q.ipynb", code("# mm4: remote\nx = 1"))
    assert mm4(["start"], cwd=daemon_project).returncode == 0
    log = daemon_project / ".mm4" / "daemon.log"
    delays = []
    for n in range(3):
        time.sleep(1.5)  # idle again: its loop sleeps a second at a time
        assert mm4(["run", "--queue", "notebooks/q.ipynb"], cwd=daemon_project).returncode == 0
        queued = time.time()
        line = wait_for(lambda n=n: [x for x in log.read_text().splitlines() if "started entry" in x][n:], what="start")
        delays.append(datetime.strptime(line[0][:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() - queued)  # local time
        wait_for(lambda: entries(daemon_project) == [], timeout=60, what="the run to end")
    assert max(delays) < 0.45, delays
    assert mm4(["status"], cwd=daemon_project).stdout.startswith("daemon: running")  # the signal did not stop it


def test_kill_9_of_the_daemon_loses_nothing_and_duplicates_nothing(daemon_project):
    nb = write_notebook(daemon_project / "notebooks" / "k.ipynb", code("# mm4: remote\nimport time\nv = 0"))
    start_then_save(daemon_project, nb, code("# mm4: remote\nimport time\ntime.sleep(4)\nv = 1"))
    run_dir = wait_for(lambda: run_dirs(daemon_project), what="the run")[0]
    os.kill(daemon_pid(daemon_project), signal.SIGKILL)
    mark = len(decisions(daemon_project))
    mm4(["start"], cwd=daemon_project)  # adopts the run still going
    wait_for(lambda: load_record(run_dir)["status"] == "succeeded", what="the run to finish")
    # the restarted daemon looked at the notebook again and saw what it had queued: no second run
    assert decided(daemon_project, "notebooks/k.ipynb", mark) == {"notebooks/k.ipynb": "unchanged"}
    assert entries(daemon_project) == []
    assert run_dirs(daemon_project) == [run_dir]


def test_a_run_whose_process_dies_is_recorded_and_queued_again_once(daemon_project):
    nb = write_notebook(daemon_project / "notebooks" / "r.ipynb", code("# mm4: remote\nimport time\nv = 0"))
    start_then_save(daemon_project, nb, code("# mm4: remote\nimport time\ntime.sleep(5)"))
    first = wait_for(lambda: run_dirs(daemon_project), what="the run")[0]
    entry = wait_for(lambda: [e for e in entries(daemon_project) if e["run_id"] == first.name], what="the entry")[0]
    queue_pid = _entry_pid(daemon_project, entry["id"])
    import psutil

    # the run's own process and its runner and kernel, as in a power cut: nothing is left to follow
    # (with the runner alive, the run is followed to its end instead: test_odd_inputs)
    tree = [psutil.Process(queue_pid), *psutil.Process(queue_pid).children(recursive=True)]
    for process in tree:
        process.kill()
    wait_for(lambda: load_record(first)["status"] == "interrupted", what="interrupted")
    second = wait_for(
        lambda: [d for d in run_dirs(daemon_project) if d != first and status_of(d) == "succeeded"],
        timeout=60,
        what="the run again",
    )[0]
    assert load_record(second)["notebook"] == "notebooks/r.ipynb"
    # queued again once: when the requeued run has ended, nothing else waits or runs
    wait_for(lambda: entries(daemon_project) == [], what="the queue empty")
    assert len(run_dirs(daemon_project)) == 2


def _entry_pid(project, entry_id):
    from mm4watch.queue.entries import Queue

    return Queue(project / ".mm4").get(entry_id).pid


def test_an_unreachable_executor_keeps_runs_waiting(daemon_project, mini):
    (daemon_project / "mm4.toml").write_text(
        mini_toml(mini, port="1") + '\n[daemon]\ndebounce = "0.5s"\nnotify = false\n'
    )
    (daemon_project / "Dockerfile").write_text(TEST_DOCKERFILE)
    (daemon_project / "requirements.txt").write_text("# nothing beyond papermill\n")
    nb = write_notebook(daemon_project / "notebooks" / "u.ipynb", code("# mm4: remote\nx = 0"))
    start_then_save(daemon_project, nb, code("# mm4: remote\nx = 1"))
    waiting = wait_for(lambda: [e for e in entries(daemon_project) if e["last_error"]], what="a reason")[0]
    assert "cannot reach" in waiting["last_error"] and waiting["state"] == "queued"
    assert "waiting because: cannot reach" in mm4(["status"], cwd=daemon_project).stdout
    assert run_dirs(daemon_project) == []  # nothing ran, nothing half-made
    # the Mini comes back (here: the config is fixed); the run happens, once
    (daemon_project / "mm4.toml").write_text(mini_toml(mini) + '\n[daemon]\ndebounce = "0.5s"\nnotify = false\n')
    done = wait_for(
        lambda: [d for d in run_dirs(daemon_project) if status_of(d) == "succeeded"],
        timeout=120,
        what="the run after the Mini returned",
    )
    assert len(done) == 1 and entries(daemon_project) == []


def test_a_container_run_is_picked_up_after_a_crash(daemon_project, mini):
    (daemon_project / "mm4.toml").write_text(mini_toml(mini) + '\n[daemon]\ndebounce = "0.5s"\nnotify = false\n')
    (daemon_project / "Dockerfile").write_text(TEST_DOCKERFILE)
    (daemon_project / "requirements.txt").write_text("# nothing beyond papermill\n")
    nb = write_notebook(daemon_project / "notebooks" / "c.ipynb", code("# mm4: remote\nx = 0"))
    start_then_save(
        daemon_project,
        nb,
        code("# mm4: remote\nimport os, pathlib, time\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])"),
        code("time.sleep(10)\n(out / 'final.txt').write_text('made it')"),
    )
    run_dir = wait_for(
        lambda: [d for d in run_dirs(daemon_project) if status_of(d) == "running"],
        timeout=120,
        what="the run",
    )[0]
    entry = wait_for(lambda: [e for e in entries(daemon_project) if e["run_id"] == run_dir.name], what="entry")[0]
    time.sleep(2)
    os.kill(daemon_pid(daemon_project), signal.SIGKILL)
    os.kill(_entry_pid(daemon_project, entry["id"]), signal.SIGKILL)  # this machine "crashed"
    time.sleep(0.5)
    assert load_record(run_dir)["status"] == "running"
    mm4(["start"], cwd=daemon_project)
    wait_for(lambda: load_record(run_dir)["status"] == "succeeded", timeout=120, what="the re-attached run")
    record = load_record(run_dir)
    assert record["executor"]["reattached"] is True
    assert (run_dir / "final.txt").read_text() == "made it"
    assert run_dirs(daemon_project) == [run_dir]


def test_notification_and_restart_running(daemon_project):
    (daemon_project / "mm4.toml").write_text(
        '[run]\nexecutor = "local"\n[daemon]\ndebounce = "0.5s"\nrestart_running = true\n'
        'notify_command = "echo $MM4_RUN_STATUS $MM4_RUN_ID >> notified.txt"\n'
    )
    nb = write_notebook(daemon_project / "notebooks" / "w.ipynb", code("# mm4: remote\nv = 0"))
    start_then_save(daemon_project, nb, code("# mm4: remote\nimport time\ntime.sleep(60)"))
    first = wait_for(lambda: [d for d in run_dirs(daemon_project) if status_of(d) == "running"], what="run")[0]
    jupyter_save(nb, notebook_json(code("# mm4: remote\nprint('the newer one')")))
    wait_for(lambda: load_record(first)["status"] == "cancelled", what="the older run cancelled")
    second = wait_for(
        lambda: [d for d in run_dirs(daemon_project) if d != first and status_of(d) == "succeeded"],
        what="the newer run",
    )[0]
    wait_for(
        lambda: (daemon_project / "notified.txt").exists() and (daemon_project / "notified.txt").read_text(),
        what="notifications",
    )
    wait_for(lambda: len((daemon_project / "notified.txt").read_text().splitlines()) == 2, what="two notifications")
    lines = (daemon_project / "notified.txt").read_text().splitlines()
    assert sorted(lines) == sorted([f"cancelled {first.name}", f"succeeded {second.name}"])


def test_a_native_run_is_picked_up_after_a_crash(daemon_project, mac):
    from test_native_executor import native_toml

    (daemon_project / "mm4.toml").write_text(native_toml(mac) + '\n[daemon]\ndebounce = "0.5s"\nnotify = false\n')
    (daemon_project / "requirements.txt").write_text("# nothing beyond papermill\n")
    nb = write_notebook(daemon_project / "notebooks" / "g.ipynb", code("# mm4: remote\nx = 0"))
    start_then_save(
        daemon_project,
        nb,
        code("# mm4: remote\nimport os, pathlib, time\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])"),
        code("time.sleep(8)\n(out / 'final.txt').write_text('made it')"),
    )
    # once papermill's first lines are home, the run is going on the Mini
    run_dir = wait_for(
        lambda: [
            d
            for d in run_dirs(daemon_project)
            if status_of(d) == "running" and "Executing Cell" in (d / "run.log").read_text()
        ],
        timeout=600,
        what="the run",
    )[0]
    entry = wait_for(lambda: [e for e in entries(daemon_project) if e["run_id"] == run_dir.name], what="entry")[0]
    os.kill(daemon_pid(daemon_project), signal.SIGKILL)
    os.kill(_entry_pid(daemon_project, entry["id"]), signal.SIGKILL)
    time.sleep(0.5)
    mm4(["start"], cwd=daemon_project)
    wait_for(lambda: load_record(run_dir)["status"] == "succeeded", timeout=120, what="the re-attached run")
    assert load_record(run_dir)["executor"]["reattached"] is True
    assert (run_dir / "final.txt").read_text() == "made it"
    assert run_dirs(daemon_project) == [run_dir]


def test_a_changed_notebooks_folder_is_watched_without_a_restart(daemon_project):
    """mm4.toml's [project] notebooks changed while the daemon runs: the new folder is watched (and a
    folder that did not exist when it started is watched once it does)."""
    assert mm4(["start"], cwd=daemon_project).returncode == 0
    toml = daemon_project / "mm4.toml"
    toml.write_text('[project]\nnotebooks = ["analysis"]\n' + toml.read_text())
    log = daemon_project / ".mm4" / "daemon.log"
    wait_for(lambda: "mm4.toml changed: reloaded" in log.read_text(), 60, "the reload")
    (daemon_project / "analysis").mkdir()  # after the reload: watched once it exists
    wait_for(lambda: f"watching {daemon_project / 'analysis'} " in log.read_text(), 60, "the new folder watched")
    nb = daemon_project / "analysis" / "a.ipynb"
    jupyter_save(nb, notebook_json(code("# mm4: remote\nimport os, pathlib"), code("print('analysis')")))
    (run_dir,) = wait_for(lambda: [d for d in run_dirs(daemon_project) if status_of(d) == "succeeded"], 120, "a run")
    assert load_record(run_dir)["notebook"] == "analysis/a.ipynb" and load_record(run_dir)["trigger"] == "save"
