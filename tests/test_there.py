"""The far side's own steps (``far.there``), run as the Mini runs them: ``python3 -m`` in a process
with only the far side on its path (no site-packages), against real folders."""

import json
import os
import subprocess
import sys
import time

from mm4watch.far import there, venvs


def make_env(folder, name, age_s, ready=True, requirements="pandas\n"):
    venv = folder / name
    (venv / "bin").mkdir(parents=True)
    if ready:
        (venv / venvs.PROBE_NAME).write_text(json.dumps({"python": "3.9.6", "name": name}))
        (venv / venvs.REQUIREMENTS_NAME).write_text(requirements)
        (venv / venvs.READY_NAME).touch()
    when = time.time() - age_s
    os.utime(venv, (when, when))
    return venv


def far_side_only(tmp_path):
    """A folder holding the far side's files alone, as the Mini's lib/ does."""
    from mm4watch.executors.far_side import FAR_SIDE, runner_files

    package, files = runner_files()
    lib = tmp_path / "lib"
    for name, path in zip(FAR_SIDE, files, strict=True):
        (lib / "mm4watch" / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / "mm4watch" / name).write_bytes(path.read_bytes())
    return lib


def step(lib, *argv):
    return step_in(lib, b"", *argv)


def test_prune_keeps_the_newest_and_the_pinned(tmp_path):
    folder = tmp_path / "venvs"
    for i, name in enumerate(["a", "b", "c", "d", "e"]):
        make_env(folder, name, age_s=100 * (i + 1))  # a newest, e oldest
    removed = venvs.prune(folder, key="c", keep=3, keep_also={"e"})
    # c (this run's) counts among the 3 kept: then a and b, the newest others; d goes, e is pinned
    assert removed == ["d"]
    assert sorted(p.name for p in folder.iterdir()) == ["a", "b", "c", "e"]


def test_prune_removes_read_only_folders_too(tmp_path):
    folder = tmp_path / "venvs"
    make_env(folder, "new", age_s=10)
    old = make_env(folder, "old", age_s=100)
    (old / "lib").mkdir()
    (old / "lib" / "x.py").write_text("")
    os.chmod(old / "lib", 0o555)
    assert venvs.prune(folder, key="new", keep=1, keep_also=set()) == ["old"]
    assert not old.exists()


def test_environment_pins_prunes_and_says_ready(tmp_path):
    lib = far_side_only(tmp_path)
    base = tmp_path / "base"
    folder = base / "venvs"
    make_env(folder, "k1", age_s=10)
    make_env(folder, "k2", age_s=20)
    make_env(folder, "k3", age_s=30)
    (base / "runs" / "other").mkdir(parents=True)
    (base / "runs" / "other" / venvs.PIN_NAME).write_text("k3\n")  # a run still going names k3
    said = step(lib, "environment", "--base", str(base), "--key", "k2", "--keep", "1", "--run", "r1")
    assert said["ready"] == {"python": "3.9.6", "name": "k2"}
    assert said["removed"] == ["k1"]  # k3 is pinned by the other run
    assert (base / "runs" / "r1" / venvs.PIN_NAME).read_text() == "k2\n"
    assert sorted(p.name for p in folder.iterdir()) == ["k2", "k3"]


def test_environment_not_there_says_what_the_newest_was_built_from(tmp_path):
    lib = far_side_only(tmp_path)
    base = tmp_path / "base"
    folder = base / "venvs"
    make_env(folder, "half", age_s=5, ready=False)  # a half-built one says nothing
    make_env(folder, "older", age_s=50, requirements="numpy==2.0\n")
    said = step(lib, "environment", "--base", str(base), "--key", "new", "--keep", "3", "--run", "r2")
    assert said == {"ready": None, "earlier": "numpy==2.0\n", "removed": []}
    said = step(lib, "environment", "--base", str(tmp_path / "empty"), "--key", "k", "--keep", "3", "--run", "r")
    assert said == {"ready": None, "earlier": None, "removed": []}


def test_a_half_built_environment_is_not_ready(tmp_path):
    venv = make_env(tmp_path / "venvs", "k", age_s=1)
    (venv / venvs.PROBE_NAME).write_text("{not json")
    assert venvs.read_ready(venv) is None
    (venv / venvs.READY_NAME).unlink()
    assert venvs.read_ready(venv) is None


def test_state_says_result_alive_and_boot_time(tmp_path):
    lib = far_side_only(tmp_path)
    run = tmp_path / "runs" / "k"
    run.mkdir(parents=True)
    result = run / "output" / ".mm4" / "result.json"
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        (run / "pid").write_text(f"{sleeper.pid}\n")
        said = step(lib, "state", "--run", str(run), "--result", str(result))
        assert said["alive"] is True and said["result"] is False
        assert isinstance(said["boot"], float) and said["boot"] < time.time()
    finally:
        sleeper.kill()
        sleeper.wait()
    result.parent.mkdir(parents=True)
    result.write_text("{}")
    said = step(lib, "state", "--run", str(run), "--result", str(result))
    assert said["alive"] is False and said["result"] is True


def test_found_says_whether_the_run_started_and_its_log_so_far(tmp_path):
    lib = far_side_only(tmp_path)
    run = tmp_path / "runs" / "k"
    run.mkdir(parents=True)
    assert step(lib, "found", "--run", str(run)) == {"started": False, "log_bytes": 0}
    (run / "pid").write_text("123\n")
    (run / "run.log").write_bytes(b"x" * 1234)
    assert step(lib, "found", "--run", str(run)) == {"started": True, "log_bytes": 1234}


def test_stop_terms_the_runner_then_kills_its_tree(tmp_path):
    """A runner that heeds TERM ends at once; its child (the kernel) that ignores TERM is killed too;
    a runner that ignores TERM is killed after the grace."""
    lib = far_side_only(tmp_path)
    run = tmp_path / "runs" / "k"
    run.mkdir(parents=True)
    runner = subprocess.Popen(
        ["sh", "-c", "sh -c 'trap \"\" TERM; while :; do sleep 1; done' & wait"], start_new_session=True
    )
    (run / "pid").write_text(f"{runner.pid}\n")
    deadline = time.monotonic() + 30  # the kernel-like child is up (a busy machine starts it late)
    while not (below := there.descendants(runner.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert below, "the kernel-like child started"
    t0 = time.monotonic()
    said = step(lib, "stop", "--run", str(run), "--grace", "30")
    runner.wait(timeout=10)
    assert said["stopped"] == runner.pid and said["below"] >= 1
    assert time.monotonic() - t0 < 30  # it heeded TERM: no wait for the grace (wide: a busy machine)
    assert not any(there.alive(pid) for pid in below)
    ready = tmp_path / "ready"
    stubborn = subprocess.Popen(
        ["sh", "-c", f"trap '' TERM; touch {ready}; while :; do sleep 1; done"], start_new_session=True
    )
    (run / "pid").write_text(f"{stubborn.pid}\n")
    deadline = time.monotonic() + 30  # its trap is set before it is asked to stop
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    step(lib, "stop", "--run", str(run), "--grace", "1")
    assert stubborn.wait(timeout=10) == -9 and time.monotonic() - t0 >= 1


def _tar_gz(members):
    import gzip
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue())


def step_in(lib, stdin, *argv):
    """A far-side step as the Mini runs it, ``stdin`` sent to it: its line of JSON."""
    done = subprocess.run(
        [sys.executable, "-S", "-m", "mm4watch.far.there", *argv],
        cwd=lib.parent, env={"PYTHONPATH": str(lib), "PATH": os.environ["PATH"]},
        input=stdin, capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def test_code_is_sent_once_per_digest_and_copied_for_each_run(tmp_path):
    lib = far_side_only(tmp_path)
    base = tmp_path / "base"
    args = ["code", "--base", str(base), "--digest", "d1"]
    assert step(lib, *args, "--run", "r1") == {"copied": False}  # nothing there yet: send it
    project = _tar_gz([("src", "dir", b""), ("src/a.py", "file", b"print(1)\n"), ("link.py", "link", "src/a.py")])
    assert step_in(lib, project, *args, "--run", "r1", "--incoming") == {"copied": True, "files": 1}
    mine = base / "runs" / "r1" / "code"
    assert (mine / "src" / "a.py").read_text() == "print(1)\n" and os.readlink(mine / "link.py") == "src/a.py"
    assert (base / "code" / ".mm4-digest").read_text() == "d1\n"
    assert step(lib, *args, "--run", "r2") == {"copied": True}  # the same code: copied, not sent
    assert (base / "runs" / "r2" / "code" / "src" / "a.py").exists()
    assert step(lib, "code", "--base", str(base), "--digest", "d2", "--run", "r3") == {"copied": False}


def test_code_that_would_land_outside_its_folder_is_refused(tmp_path):
    lib = far_side_only(tmp_path)
    base = tmp_path / "base"
    args = ["code", "--base", str(base), "--digest", "d", "--run", "r", "--incoming"]
    for members in (
        [("../evil.py", "file", b"x")],
        [("/tmp/evil.py", "file", b"x")],
        [("etc", "link", "/etc")],
        [("up", "link", "../../outside")],
    ):
        said = step_in(lib, _tar_gz(members), *args)
        assert "refused" in said["error"], said
    assert not (tmp_path / "evil.py").exists() and not (base / "runs" / "r" / "code").exists()


def test_poll_sends_the_log_from_an_offset_and_says_when_the_run_ended(tmp_path):
    lib = far_side_only(tmp_path)
    run = tmp_path / "run"
    (run / "output").mkdir(parents=True)
    (run / "run.log").write_bytes(b"first\nsecond line\n{not json}\n")
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / "pid").write_text(f"{runner.pid}\n")
        result = run / "output" / "result.json"
        argv = [sys.executable, "-S", "-m", "mm4watch.far.there", "poll", "--run", str(run), "--result", str(result)]
        env = {"PYTHONPATH": str(lib), "PATH": os.environ["PATH"]}
        t0 = time.monotonic()
        out = subprocess.run([*argv, "--wait", "0.5", "--offset", "6"], env=env, capture_output=True, timeout=60).stdout
        assert time.monotonic() - t0 >= 0.5  # it waited for an end that did not come
        said = json.loads(out.rstrip(b"\n").rpartition(b"\n")[2])
        assert said == {"ended": False, "bytes": 23}  # the log's lines, a line like JSON among them, come first
        assert out.startswith(b"second line\n{not json}\n")
        result.write_text("{}")
        out = subprocess.run([*argv, "--wait", "30", "--offset", "30"], env=env, capture_output=True, timeout=60).stdout
        assert json.loads(out.strip()) == {"ended": True, "bytes": 0}
        result.unlink()
        runner.kill()
        runner.wait()
        out = subprocess.run([*argv, "--wait", "30", "--offset", "30"], env=env, capture_output=True, timeout=60).stdout
        assert json.loads(out.strip())["ended"] is True  # its runner gone, no result: ended all the same
    finally:
        runner.kill()


def test_uv_gc_without_a_cache_says_so(tmp_path):
    lib = far_side_only(tmp_path)
    assert step(lib, "uv-gc", "--tools", str(tmp_path / "nothing"), "--bound", "1000") == {"cache": False}


def test_a_failed_build_says_why_and_leaves_no_ready_environment(tmp_path):
    """pip cannot install a requirements file that is not there; uv is not to be had (its tool folder
    is a file): the step says which command failed, how it built, and keeps what the commands said."""
    lib = far_side_only(tmp_path)
    base = tmp_path / "work" / "project"
    base.mkdir(parents=True)
    (tmp_path / "work" / "tools").write_text("not a folder")
    done = subprocess.run(
        [sys.executable, "-m", "mm4watch.far.there", "build", "--base", str(base), "--key", "k1",
         "--requirements", str(tmp_path / "missing.txt")],
        env={"PYTHONPATH": str(lib), "PATH": os.environ["PATH"], "PIP_NO_INDEX": "1"},
        capture_output=True, timeout=300,
    )  # fmt: skip
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said["how"]["uv"] is None and said["how"]["why"], said
    assert "failed" in said and "pip" in said["failed"], said
    assert "missing.txt" in said["log"], said["log"]
    assert not (base / "venvs" / "k1" / venvs.READY_NAME).exists()


def test_start_makes_the_folder_links_and_starts_the_runner_on_its_own(tmp_path):
    """The job's tar unpacked, links made, the runner started in its folder with the far side on its
    path and the run's variables, detached (its own session), its pid written."""
    lib = far_side_only(tmp_path)
    (lib / "probe_runner.py").write_text(
        "import json, os, sys\n"
        "print(json.dumps({'spec': open(sys.argv[1]).read(), 'cwd': os.getcwd(), 'var': os.environ['MM4_X'],\n"
        "  'path': os.environ['PYTHONPATH'], 'session': os.getsid(0) == os.getpid()}))\n"
    )
    run, data = tmp_path / "run", tmp_path / "data"
    data.mkdir()
    (run / "code").mkdir(parents=True)
    said = step_in(
        lib, _tar_gz([("spec.json", "file", b'{"a": 1}')]),
        "start", "--run", str(run), "--cwd", str(run / "code"), "--python", sys.executable,
        "--module", "probe_runner", "--folders", json.dumps(["output/.mm4"]),
        "--links", json.dumps({str(run / "code" / "data"): str(data)}), "--env", json.dumps({"MM4_X": "y"}),
    )  # fmt: skip
    assert said["pid"] == int((run / "pid").read_text()) and said["awake"] is False  # no caffeinate here
    assert (run / "output" / ".mm4").is_dir() and os.readlink(run / "code" / "data") == str(data)
    deadline = time.monotonic() + 60
    while not (run / "run.log").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    ran = json.loads((run / "run.log").read_text())
    assert ran == {"spec": '{"a": 1}', "cwd": str(run / "code"), "var": "y", "path": str(lib), "session": True}


def test_a_build_waits_for_the_same_environment_built_meanwhile_and_takes_it(tmp_path):
    """Two runs of a sweep need one environment: the second build takes the first's, under its lock,
    and never removes it (it removed it half-built before, failing both runs)."""
    import fcntl
    import threading

    base = tmp_path / "work" / "proj"
    venv = base / "venvs" / "k1"
    (base / "venvs").mkdir(parents=True)
    lock = open(base / "venvs" / ".k1.lock", "a")  # noqa: SIM115 - held across the thread's wait
    fcntl.flock(lock, fcntl.LOCK_EX)  # a build under way
    said: list[dict] = []
    waiting = threading.Thread(target=lambda: said.append(venvs.build(str(base), "k1", "", "")))
    waiting.start()
    time.sleep(0.5)
    assert not said  # it waits for the lock
    venv.mkdir()
    (venv / venvs.PROBE_NAME).write_text(json.dumps({"python": "3.9.6"}))
    (venv / venvs.READY_NAME).touch()  # the first build ends whole
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()
    waiting.join(30)
    assert said == [{"ready": {"python": "3.9.6"}, "how": {"meanwhile": True}, "log": ""}]
    assert (venv / venvs.READY_NAME).is_file()
