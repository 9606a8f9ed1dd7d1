"""Names, ids, files and units are data: nothing another user, a record or a name can write is
followed, run or split; what a run no longer needs is not kept."""

import json
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import code, load_record, mm4, on_mac, run_dirs, write_notebook

from mm4watch.core import fsutil
from mm4watch.core.errors import Mm4Error
from mm4watch.queue.entries import Queue

# -- parameters --------------------------------------------------------------


@pytest.mark.usefixtures("kernel")
def test_soft_keywords_are_parameter_names_and_hard_ones_are_refused(project):
    write_notebook(
        project / "notebooks" / "p.ipynb",
        code("match = 0\ncase = ''\ntype = 0", tags=["parameters"]),
        code("# mm4: remote\nprint('got', match, case, type)"),
    )
    done = mm4(["run", "notebooks/p.ipynb", "-p", "match=1", "-p", "case=x", "-p", "type=3"], cwd=project)
    assert done.returncode == 0, done.stderr
    assert load_record(run_dirs(project)[0])["parameters"] == {"match": 1, "case": "x", "type": 3}
    assert "got 1 x 3" in (run_dirs(project)[0] / "run.log").read_text()
    refused = mm4(["run", "notebooks/p.ipynb", "-p", "class=1"], cwd=project)
    assert refused.returncode == 2 and "'class' is a Python keyword" in refused.stderr, refused.stderr


# -- the queue keeps no notebook past its entry ----------------------------------


def test_an_ended_entry_drops_the_notebooks_bytes_and_the_space_comes_back(tmp_path):
    queue = Queue(tmp_path)
    big = os.urandom(6 << 20)  # three 6 MB notebooks, as big outputs make them
    ids = [queue.add(f"n{i}.ipynb", "manual", content=big + bytes([i])).id for i in range(3)]
    size_full = (tmp_path / "queue.sqlite").stat().st_size
    assert size_full > 18 << 20
    for entry_id in ids:
        assert queue.claim(entry_id, os.getpid(), 1.0)
        queue.done(entry_id)
    assert all(queue.get(i).content is None for i in ids)
    assert queue.asked_before("n0.ipynb", big + b"\0")  # what it was is still known, by its digest
    assert not queue.asked_before("n0.ipynb", big + b"\1")
    Queue(tmp_path)  # the next one to open it gives the space back
    for suffix in ("", "-wal"):
        path = tmp_path / f"queue.sqlite{suffix}"
        if path.exists() and suffix == "-wal":
            subprocess.run(["sqlite3", str(tmp_path / "queue.sqlite"), "pragma wal_checkpoint(truncate)"], check=False)
    assert (tmp_path / "queue.sqlite").stat().st_size < 2 << 20, (tmp_path / "queue.sqlite").stat().st_size


# -- a systemd unit holds the path as data ---------------------------------------


def test_the_systemd_unit_escapes_every_value_and_refuses_a_line_break(tmp_path):
    root = tmp_path / 'we %i $HOME "q" x'
    root.mkdir()
    (root / "mm4.toml").write_text('[run]\nexecutor = "local"\n')
    shown = mm4(["service", "show"], cwd=root)
    assert shown.returncode == 0, shown.stderr
    unit = shown.stdout
    lines = [line for line in unit.splitlines() if line.startswith("WorkingDirectory=")]
    assert lines == [f"WorkingDirectory={str(root).replace('%', '%%')}"], unit
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.startswith('ExecStart="') and "%i" not in exec_start.replace("%%", "")
    (tmp_path / "u.service").write_text(unit)
    verify = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "u.service")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr

    broken = tmp_path / "a\nExecStartPre=touch mm4-unit-pwned\n"
    broken.mkdir()
    (broken / "mm4.toml").write_text('[run]\nexecutor = "local"\n')
    refused = mm4(["service", "show"], cwd=broken)
    assert refused.returncode != 0 and "a systemd unit cannot hold" in refused.stderr, refused.stderr
    assert "ExecStartPre" not in refused.stdout


# -- this user's own files, and agents of this user's only ---------------------------


def test_shared_files_live_in_a_folder_of_the_users_own_and_a_stranger_folder_is_refused(tmp_path, monkeypatch):
    lock = fsutil.host_lock("test", "key")
    folder = lock.parent
    assert folder == Path(f"/tmp/mm4-host-{os.getuid()}")
    assert folder.stat().st_mode & 0o777 == 0o700 and folder.stat().st_uid == os.getuid()
    # a folder another user made first (here: one others may enter) is refused, never used
    monkeypatch.setattr(os, "getuid", lambda: 4242)
    stranger = Path("/tmp/mm4-host-4242")
    stranger.mkdir(mode=0o777, exist_ok=True)
    os.chmod(stranger, 0o777)
    try:
        with pytest.raises(Mm4Error, match="not a folder of your own with mode 0700"):
            fsutil.host_lock("test", "key")
    finally:
        stranger.rmdir()


def test_a_unix_socket_says_whose_process_answers(tmp_path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = tmp_path / "s.sock"
    server.bind(str(path))
    server.listen(1)
    accepter = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
    accepter.start()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    assert fsutil.peer_uid(client) == os.getuid()
    client.close()
    accepter.join(30)  # its accept done before the socket closes under it
    server.close()


def test_an_agent_socket_of_another_user_is_never_asked(tmp_path):
    """A socket at the agent's path that another user's process serves: the client does not talk to it."""
    import tempfile

    from mm4watch.remote import dask_agent

    nobody = 65534
    folder = Path(tempfile.mkdtemp(prefix="mm4-test-", dir="/tmp"))
    os.chmod(folder, 0o777)  # where a stranger can make the socket
    path = folder / "agent.sock"
    # a fake agent, served by a process running as another user
    fake = subprocess.Popen(
        [
            "python3",
            "-c",
            "import os,socket,sys\n"
            f"os.setgid({nobody}); os.setuid({nobody})\n"
            "s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); print('up', flush=True)\n"
            'c,_=s.accept(); c.recv(100); c.sendall(b\'{"ok": {"pid": 1}}\\n\'); c.recv(100)\n',
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == "up"
        assert dask_agent._try(path) is None
    finally:
        fake.kill()
        fake.wait()
        path.unlink(missing_ok=True)
        folder.rmdir()


# -- names and ids ------------------------------------------------------------------


@pytest.mark.usefixtures("kernel")
def test_a_control_character_in_a_name_never_reaches_a_run_id(project):
    name = "two\nlines\tand\x1bescape"
    write_notebook(project / "notebooks" / f"{name}.ipynb", code("# mm4: remote\nx = 1"))
    done = mm4(["run", f"notebooks/{name}.ipynb"], cwd=project)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(project)
    assert run_dir.name.startswith("two_lines_and_escape_"), run_dir.name
    assert load_record(run_dir)["notebook"] == f"notebooks/{name}.ipynb"  # the notebook keeps its name


@pytest.mark.usefixtures("kernel")
def test_remote_runs_go_on_past_a_run_folder_with_a_newline_in_its_name(tmp_path, mac):
    """An older version named a run folder with a newline: the mirror's file list is NUL-separated."""
    from test_native_executor import native_toml

    root = tmp_path / "nproj"
    (root / "notebooks").mkdir(parents=True)
    (root / "requirements.txt").write_text("# nothing beyond papermill\n")
    (root / "mm4.toml").write_text(native_toml(mac))
    write_notebook(root / "notebooks" / "a.ipynb", code("# mm4: remote\nx = 1"))
    first = mm4(["run", "notebooks/a.ipynb"], cwd=root, timeout=600)
    assert first.returncode == 0, first.stderr
    (done,) = run_dirs(root)
    odd = done.parent / "a\nb_20250101_000000"
    os.rename(done, odd)
    record = json.loads((odd / "run.json").read_text())
    (odd / "run.json").write_text(json.dumps({**record, "id": odd.name}))
    import shutil

    evil = done.parent / "evil_20250101_000000"  # and a record whose id is a path: skipped, never followed
    shutil.copytree(odd, evil)
    (evil / "run.json").write_text(json.dumps({**record, "id": "../../x"}))
    again = mm4(["run", "notebooks/a.ipynb"], cwd=root, timeout=600)
    assert again.returncode == 0, again.stderr
    newest = max(run_dirs(root), key=lambda d: d.stat().st_mtime)
    assert load_record(newest)["status"] == "succeeded"


# -- .dockerignore means Docker's rules on every executor ---------------------------------


@pytest.mark.usefixtures("kernel")
@pytest.mark.parametrize(
    "rules",
    ["*\n!src\n!requirements.txt\n", "secret.txt\n!\n"],
    ids=["allow-list", "lone bang"],
)
def test_a_native_run_gets_what_dockerignore_lets_through(tmp_path, mac, rules):
    from test_native_executor import native_toml

    root = tmp_path / "nproj"
    (root / "notebooks").mkdir(parents=True)
    (root / "src").mkdir()
    (root / "src" / "__init__.py").write_text("")
    (root / "src" / "helper.py").write_text("VALUE = 7\n")
    (root / "secret.txt").write_text("do not ship")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_text("data is not code")
    (root / "requirements.txt").write_text("# nothing beyond papermill\n")
    (root / ".dockerignore").write_text(rules)
    (root / "mm4.toml").write_text(native_toml(mac, "sync_data = false\n"))
    write_notebook(
        root / "notebooks" / "a.ipynb",
        code(
            "# mm4: remote\nimport os, sys, json, pathlib\nsys.path.insert(0, '..')\nfrom src.helper import VALUE\n"
            "top = sorted(p.name for p in pathlib.Path('..').iterdir())\n"
            "(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'seen.json').write_text(json.dumps([VALUE, top]))"
        ),
    )
    done = mm4(["run", "notebooks/a.ipynb"], cwd=root, timeout=600)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(root)
    assert load_record(run_dir)["status"] == "succeeded", (run_dir / "run.log").read_text()[-2000:]
    value, top = json.loads((run_dir / "seen.json").read_text())
    assert value == 7
    assert "secret.txt" not in top and ".git" not in top and ".mm4" not in top, top
    assert "data" not in top or on_mac(mac, "true") is not None  # data only as configured (a link), never copied


# -- what a run uses is never removed under it --------------------------------------------


@pytest.mark.usefixtures("kernel")
def test_a_long_native_run_keeps_its_environment_through_three_requirement_changes(tmp_path, mac):
    import time
    import uuid

    from conftest import mm4_background
    from test_native_executor import native_toml

    root = tmp_path / "nproj"
    (root / "notebooks").mkdir(parents=True)
    (root / "requirements.txt").write_text("# environment 0\n")
    (root / "mm4.toml").write_text(native_toml(mac, "keep_environments = 1\n"))
    gate = f"/tmp/mm4-gate-{uuid.uuid4().hex}"
    write_notebook(
        root / "notebooks" / "long.ipynb",
        code(f"# mm4: remote\nimport os, time\nwhile not os.path.exists({gate!r}):\n    time.sleep(0.2)"),
        code(
            "import papermill  # in the environment, and not imported by a kernel as it starts\nprint('still here', papermill.__version__)"
        ),
    )
    write_notebook(root / "notebooks" / "short.ipynb", code("# mm4: remote\nx = 1"))
    long_run = mm4_background(["run", "notebooks/long.ipynb"], cwd=root)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # waiting at its gate, on its environment
            dirs = run_dirs(root)
            if dirs and "Executing Cell 1" in (dirs[0] / "run.log").read_text(errors="replace"):
                break
            if long_run.poll() is not None:
                raise AssertionError(long_run.communicate())
            time.sleep(0.5)
        for n in (1, 2, 3):
            (root / "requirements.txt").write_text(f"# environment {n}\n")
            done = mm4(["run", "notebooks/short.ipynb"], cwd=root, timeout=600)
            assert done.returncode == 0, done.stderr
        on_mac(mac, f"touch {gate}")
        out, err = long_run.communicate(timeout=300)
        assert long_run.returncode == 0, err
    finally:
        on_mac(mac, f"touch {gate}")  # a run left there ends too, whatever happened here
        if long_run.poll() is None:
            long_run.kill()
    long_dir = next(d for d in run_dirs(root) if load_record(d)["notebook"] == "notebooks/long.ipynb")
    assert load_record(long_dir)["status"] == "succeeded", (long_dir / "run.log").read_text()[-2000:]
    assert "still here" in (long_dir / "run.log").read_text()
