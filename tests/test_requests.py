"""Every request runs exactly once: merged, never doubled; never silently replaced; never wedged.

Real daemon, real git hooks, real kernels."""

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import code, git, held, load_record, mm4, notebook_json, run_dirs, wait_for, write_notebook
from test_daemon import jupyter_save

from mm4watch.core.names import run_key
from mm4watch.queue.entries import MAX_START_FAILURES, Queue

pytestmark = pytest.mark.usefixtures("kernel")

TOML = '[run]\nexecutor = "local"\ntimeout = "2m"\n[daemon]\ndebounce = "{debounce}"\nnotify = false\n'


def status(run_dir):
    try:
        return load_record(run_dir)["status"]
    except (OSError, ValueError):
        return None


def finished(project, n, timeout=90, before=()):
    """The project's run folders (less ``before``) once ``n`` of them have ended (and no more appear for a moment)."""

    def ended():
        dirs = [d for d in run_dirs(project) if d not in before]
        return dirs if len(dirs) >= n and all(status(d) not in (None, "queued", "running") for d in dirs) else None

    wait_for(ended, timeout=timeout, what=f"{n} finished run(s)")
    time.sleep(2.5)  # a duplicate would show up now
    return [d for d in run_dirs(project) if d not in before]


def entries(project):
    return Queue(project / ".mm4").entries(("queued", "claimed", "done", "superseded", "merged", "parked", "rejected"))


def commit_all(project, message):
    git(project, "add", "-A")
    done = subprocess.run(["git", "commit", "-q", "-m", message], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return git(project, "rev-parse", "HEAD")


@pytest.fixture
def hooked(repo):
    (repo / "mm4.toml").write_text(TOML.format(debounce="1.5s"))
    assert mm4(["install-hooks"], cwd=repo).returncode == 0
    commit_all(repo, "config")
    yield repo
    mm4(["stop", "--now"], cwd=repo)


def start(project, settle=0):
    """Start the daemon; with ``settle``, wait for that many runs of what was committed before; returns them."""
    done = mm4(["start"], cwd=project)
    assert done.returncode == 0, done.stderr  # it returns once the daemon watches
    return finished(project, settle) if settle else []


def triggers(record):
    return [t["trigger"] for t in record["triggers"]]


def test_save_then_commit_of_the_same_content_runs_once(hooked):
    nb = write_notebook(hooked / "notebooks" / "a.ipynb", code("# mm4: remote\nx = 0"))
    commit_all(hooked, "a")
    before = start(hooked, settle=1)
    jupyter_save(nb, notebook_json(code("# mm4: remote\nx = 1")))  # a save, committed before its debounce ends
    time.sleep(0.3)  # the time it takes to type `git commit`
    sha = commit_all(hooked, "x = 1")
    (run_dir,) = finished(hooked, 1, before=before)
    record = load_record(run_dir)
    assert record["status"] == "succeeded"
    assert sorted(triggers(record)) == ["commit", "save"] and record["trigger"] == triggers(record)[0]
    assert record["commit"] == {"sha": sha, "branch": "main", "dirty": False}
    merged = [e for e in entries(hooked) if e.state == "merged"]
    assert len(merged) == 1 and merged[0].note.startswith("same content as entry")


def test_a_commit_during_the_save_run_of_the_same_content_joins_that_run(hooked, tmp_path):
    nb = write_notebook(hooked / "notebooks" / "b.ipynb", code("# mm4: remote\nx = 0"))
    commit_all(hooked, "b")
    before = start(hooked, settle=1)
    (tmp_path / "hold").touch()
    jupyter_save(nb, notebook_json(held(tmp_path / "hold")))
    wait_for(lambda: any(status(d) == "running" for d in run_dirs(hooked)), timeout=30, what="the save's run")
    sha = commit_all(hooked, "the same bytes, committed")
    wait_for(lambda: any(e.state == "merged" for e in entries(hooked)), 30, what="the commit to join the run")
    (tmp_path / "hold").unlink()  # the run ends after the commit joined it
    (run_dir,) = finished(hooked, 1, before=before)
    record = load_record(run_dir)
    assert triggers(record) == ["save", "commit"] and record["trigger"] == "save"
    assert record["commit"] == {"sha": sha, "branch": "main", "dirty": False}
    assert record["source"]["patch"] is None
    assert json.loads(mm4(["history", "--json"], cwd=hooked).stdout)[0]["commit"]["sha"] == sha  # the index knows


def test_a_commit_just_after_the_run_ended_amends_it(hooked):
    nb = write_notebook(hooked / "notebooks" / "c.ipynb", code("# mm4: remote\nx = 0"))
    commit_all(hooked, "c")
    before = start(hooked, settle=1)
    jupyter_save(nb, notebook_json(code("# mm4: remote\nx = 2")))
    (run_dir,) = finished(hooked, 1, before=before)
    assert load_record(run_dir)["commit"]["dirty"] is True
    sha = commit_all(hooked, "commit what just ran")
    wait_for(lambda: load_record(run_dir)["commit"]["sha"] == sha, timeout=30, what="the record to gain the commit")
    assert len(finished(hooked, 1, before=before)) == 1
    assert triggers(load_record(run_dir)) == ["save", "commit"]


def test_a_queued_manual_run_with_parameters_is_never_replaced(hooked, tmp_path):
    nb = write_notebook(
        hooked / "notebooks" / "d.ipynb", code("# mm4: remote\nx = 0"), code("n = 0", tags=["parameters"])
    )
    blocker = write_notebook(hooked / "notebooks" / "block.ipynb", held(tmp_path / "hold"))
    commit_all(hooked, "d")
    before = start(hooked, settle=2)
    (tmp_path / "hold").touch()
    assert mm4(["run", "--queue", str(blocker)], cwd=hooked).returncode == 0  # keeps the executor busy
    assert mm4(["run", "--queue", str(nb), "-p", "n=3"], cwd=hooked).returncode == 0
    assert mm4(["run", "--queue", str(nb), "-p", "n=4"], cwd=hooked).returncode == 0
    again = mm4(["run", "--queue", str(nb), "-p", "n=4"], cwd=hooked)
    assert "not run again" in again.stdout  # the same request twice is one run
    jupyter_save(nb, notebook_json(code("# mm4: remote\nx = 9"), code("n = 0", tags=["parameters"])))
    wait_for(lambda: any(e.trigger == "save" and e.state == "queued" for e in entries(hooked)), 30, what="the save")
    (tmp_path / "hold").unlink()  # the executor is free once all four wait
    dirs = finished(hooked, 4, before=before)
    runs = [load_record(d) for d in dirs if load_record(d)["notebook"] == "notebooks/d.ipynb"]
    got = sorted((r["trigger"], json.dumps(r["parameters"])) for r in runs)
    assert got == [("manual", '{"n": 3}'), ("manual", '{"n": 4}'), ("save", "{}")], got
    assert all(r["status"] == "succeeded" for r in runs)


def test_an_older_save_is_replaced_by_a_newer_one_and_says_so(hooked, tmp_path):
    blocker = write_notebook(hooked / "notebooks" / "block.ipynb", held(tmp_path / "hold"))
    nb = write_notebook(hooked / "notebooks" / "e.ipynb", code("# mm4: remote\nx = 0"))
    commit_all(hooked, "e")
    before = start(hooked, settle=2)
    (tmp_path / "hold").touch()
    assert mm4(["run", "--queue", str(blocker)], cwd=hooked).returncode == 0
    jupyter_save(nb, notebook_json(code("# mm4: remote\nx = 1")))
    wait_for(lambda: any(e.notebook == "notebooks/e.ipynb" and e.state == "queued" for e in entries(hooked)), 30)
    jupyter_save(nb, notebook_json(code("# mm4: remote\nx = 2")))
    wait_for(lambda: any(e.state == "superseded" for e in entries(hooked)), 30, what="the older save replaced")
    shown = mm4(["queue"], cwd=hooked).stdout
    assert "superseded" in shown and "replaced by the save of" in shown
    assert "replaced by the save of" in mm4(["status"], cwd=hooked).stdout
    (tmp_path / "hold").unlink()
    dirs = finished(hooked, 2, before=before)
    e_runs = [d for d in dirs if load_record(d)["notebook"] == "notebooks/e.ipynb"]
    assert len(e_runs) == 1 and "x = 2" in (e_runs[0] / "executed.ipynb").read_text()


def test_a_save_during_a_commit_run_of_other_content_still_runs(hooked, tmp_path):
    nb = write_notebook(hooked / "notebooks" / "f.ipynb", held(tmp_path / "hold"))
    start(hooked)
    (tmp_path / "hold").touch()
    sha = commit_all(hooked, "f")
    wait_for(lambda: any(status(d) == "running" for d in run_dirs(hooked)), timeout=30, what="the commit's run")
    jupyter_save(nb, notebook_json(code("# mm4: remote\nx = 'edited after the commit'")))
    wait_for(lambda: any(e.trigger == "save" and e.state == "queued" for e in entries(hooked)), 30, what="the save")
    (tmp_path / "hold").unlink()  # the commit's run ends once the save waits behind it
    dirs = finished(hooked, 2)
    records = sorted((load_record(d) for d in dirs), key=lambda r: r["queued_at"])
    assert [r["trigger"] for r in records] == ["commit", "save"]
    assert records[0]["commit"]["sha"] == sha and records[1]["commit"]["dirty"] is True
    assert all(r["status"] == "succeeded" for r in records)


def test_a_commit_made_while_the_daemon_is_stopped_runs_as_that_commit(hooked):
    nb = write_notebook(hooked / "notebooks" / "g.ipynb", code("# mm4: remote\nx = 0"))
    commit_all(hooked, "g")
    start(hooked)  # remembers g as it is
    assert load_record(finished(hooked, 1)[0])["trigger"] == "commit"  # the commit of g, run
    assert mm4(["stop"], cwd=hooked).returncode == 0
    write_notebook(nb, code("# mm4: remote\nx = 'while stopped'"))
    sha = commit_all(hooked, "while the daemon was stopped")
    start(hooked)
    dirs = finished(hooked, 2)
    newest = max((load_record(d) for d in dirs), key=lambda r: r["queued_at"])
    assert newest["trigger"] == "commit" and newest["commit"] == {"sha": sha, "branch": "main", "dirty": False}


def test_a_broken_config_holds_runs_and_never_locks_the_user_out(hooked):
    nb = write_notebook(hooked / "notebooks" / "h.ipynb", code("# mm4: remote\nx = 0"))
    commit_all(hooked, "h")
    good = (hooked / "mm4.toml").read_text()
    start(hooked, settle=1)
    (hooked / "mm4.toml").write_text(good.replace("[daemon]", "[daemon]\ndebounse = '1s'"))
    wait_for(lambda: "HOLDING" in mm4(["status"], cwd=hooked).stdout, timeout=20, what="the daemon to hold")
    shown = mm4(["status"], cwd=hooked)
    assert shown.returncode == 0 and "debounse" in shown.stdout and "mm4.toml:" in shown.stdout
    jupyter_save(nb, notebook_json(code("# mm4: remote\nx = 'saved while broken'")))
    wait_for(lambda: any(e.state == "queued" for e in entries(hooked)), timeout=20, what="the save queued")
    time.sleep(4)
    assert len(run_dirs(hooked)) == 1  # held, not started, not spinning
    assert all(e.start_failures == 0 for e in entries(hooked))
    assert mm4(["queue"], cwd=hooked).returncode == 0
    first = run_dirs(hooked)[0].name
    assert mm4(["logs", first], cwd=hooked).returncode == 0
    (hooked / "mm4.toml").write_text(good)  # fixed: runs resume by themselves
    dirs = finished(hooked, 2)
    assert "saved while broken" in (max(dirs, key=lambda d: load_record(d)["queued_at"]) / "executed.ipynb").read_text()
    (hooked / "mm4.toml").write_text("[run\n")  # not even TOML: stop still works
    wait_for(lambda: "HOLDING" in mm4(["status"], cwd=hooked).stdout, timeout=20, what="the daemon to hold")
    stopped = mm4(["stop"], cwd=hooked)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr


def test_an_entry_that_cannot_start_is_parked_and_can_be_removed(project):
    queue = Queue(project / ".mm4")
    added = queue.add("notebooks/p.ipynb", "manual", content=b"{}", executor="local")
    for _attempt in range(MAX_START_FAILURES):
        assert queue.claim(added.id, os.getpid(), 1.0)
        after = queue.failed_to_start(added.id, "mm4.toml: unknown key 'x'", (0, 0, 0))
        queue.release(added.id) if after.state == "queued" else None
    assert queue.get(added.id).state == "parked"
    listed = mm4(["queue"], cwd=project).stdout
    assert "parked" in listed and "unknown key 'x'" in listed and f"queue remove {added.id}" in listed
    assert "parked" in mm4(["status"], cwd=project).stdout
    assert mm4(["queue", "remove", str(added.id)], cwd=project).returncode == 0
    assert queue.get(added.id).state == "removed"


def test_an_unreachable_executor_is_its_own_exit_code_and_makes_no_run_folder(project):
    (project / "mm4.toml").write_text(
        '[run]\nexecutor = "mini"\n[executors.mini]\ntype = "docker"\nhost = "ssh://nobody@127.0.0.1:1"\n'
        '[executors.gpu]\ntype = "ssh"\nhost = "ssh://nobody@127.0.0.1:1"\n'
    )
    write_notebook(project / "notebooks" / "u.ipynb", code("# mm4: remote\nx = 1"))
    for executor in ("mini", "gpu"):
        done = mm4(["run", "notebooks/u.ipynb", "--executor", executor], cwd=project, timeout=120)
        assert done.returncode == 75, done.stderr
        assert "ssh -p 1 nobody@127.0.0.1 true" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert run_dirs(project) == []
    assert "| 75 |" in (__import__("conftest").REPO / "README.md").read_text()


def test_cancel_never_signals_a_process_that_merely_reuses_a_pid(project):
    run_id = "n_20260101_000000"
    run_dir = project / "results" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "schema": 1,
                "id": run_id,
                "notebook": "notebooks/n.ipynb",
                "status": "running",
                "trigger": "manual",
                "queued_at": "2026-01-01T00:00:00+00:00",
            }
        )
    )
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        active = project / ".mm4" / "active"
        active.mkdir(parents=True)
        (active / f"{run_key(run_id)}.pid").write_text(f"{bystander.pid} 12345.0\n")  # a pid file left by a kill -9
        done = mm4(["cancel", run_id], cwd=project)
        assert done.returncode == 2 and "no mm4watch process" in done.stderr
        time.sleep(0.3)
        assert bystander.poll() is None  # not signalled
    finally:
        bystander.kill()
        bystander.wait()
