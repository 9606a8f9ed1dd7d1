"""Odd but ordinary inputs: what a run writes, an old or hand-edited record, a hostile byte.

None of them may leave a run ``running``, stop the commands that read results,
reach a shell or git as an option, run in the browser or reach the terminal raw.
Real kernels, real git, real files; a browser for the page.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from conftest import load_record, run_dirs
from support import code, git, markdown, mm4, write_notebook

from mm4watch.results.records import RECORD_NAME

ODD_OUTPUTS = (
    "# mm4: remote\nimport os, pathlib, socket\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])\n"
    "os.mkfifo(out / 'pipe.png')\n"
    # bound by a name relative to the folder: a socket's path is limited to ~100 bytes, a test folder's is not
    "here = os.getcwd(); os.chdir(out); s = socket.socket(socket.AF_UNIX); s.bind('sock'); os.chdir(here)\n"
    "(out / 'metrics.json').write_text('{\"big\": 1' + '0' * 400 + ', \"ok\": 1}')\n"
    "(out / 'deep.json').write_text('[' * 100000 + ']' * 100000)\n"
    "(out / 'kept.txt').write_text('here')"
)


def test_a_fifo_a_socket_and_metrics_that_do_not_fit_still_end_the_run(project):
    (project / "mm4.toml").write_text(
        '[run]\nexecutor = "local"\ntimeout = "2m"\n[results]\nmetrics = ["metrics.json", "deep.json"]\n'
    )
    write_notebook(project / "notebooks" / "odd.ipynb", code(ODD_OUTPUTS))
    done = mm4(["run", "notebooks/odd.ipynb"], cwd=project, timeout=120)  # hashing a FIFO would block for good
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(project)
    record = load_record(run_dir)
    assert record["status"] == "succeeded" and record["finished_at"]
    assert [o["path"] for o in record["outputs"]] == ["deep.json", "kept.txt", "metrics.json"]
    assert record["metrics"] == {"ok": 1}
    assert record["warnings"] == [
        "output pipe.png: not a regular file (a FIFO): not listed",
        "output sock: not a regular file (a socket): not listed",
    ]
    log = (run_dir / "run.log").read_text()
    assert "metrics: metrics.json: not numbers, left out: big" in log
    assert "deep.json is not JSON (maximum recursion depth exceeded" in log
    assert "pipe.png: not a regular file (a FIFO)" in log


def test_a_cell_whose_metadata_is_not_an_object_is_refused_before_anything_runs(project):
    path = write_notebook(project / "notebooks" / "m.ipynb", code("# mm4: remote\nx = 1"))
    nb = json.loads(path.read_text())
    nb["cells"][0]["metadata"] = []
    path.write_text(json.dumps(nb))
    done = mm4(["run", "notebooks/m.ipynb"], cwd=project)
    assert done.returncode == 2 and "cell 0's metadata is not an object" in done.stderr, done.stderr
    assert run_dirs(project) == []


# -- records edited by hand or cut short ----------------------------------------------------------

BROKEN = {
    "list": [],
    "garbage_time": {"queued_at": "garbage"},
    "text_duration": {"duration_s": "9"},
    "number_notebook": {"notebook": 5},
    "text_metric": {"metrics": {"acc": "high"}},
    "option_sha": {"commit": {"sha": "--output=/tmp/mm4-pwned", "branch": None, "dirty": False}},
    "cut_short": None,  # half a file
    "id_a_path": {"id": "/tmp/mm4-elsewhere"},  # an id is its folder's name, never a path
    "id_up": {"id": "../../x"},
}


def _break(run_dir: Path, how: str) -> None:
    path = run_dir / RECORD_NAME
    if BROKEN[how] is None:
        path.write_text(path.read_text()[:40])
    elif isinstance(BROKEN[how], list):
        path.write_text("[]")
    else:
        path.write_text(json.dumps({**json.loads(path.read_text()), **BROKEN[how]}))  # type: ignore[dict-item]


def test_bad_records_are_skipped_with_one_warning_and_the_good_runs_still_work(repo):
    write_notebook(repo / "notebooks" / "a.ipynb", code("# mm4: remote\nx = 1"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a")
    assert mm4(["run", "notebooks/a.ipynb"], cwd=repo).returncode == 0
    (good,) = run_dirs(repo)
    for n in range(len(BROKEN)):  # good records of their own first, then broken by hand
        copy = good.parent / f"{good.name}_{n + 10}"
        shutil.copytree(good, copy)
        record = json.loads((copy / RECORD_NAME).read_text())
        (copy / RECORD_NAME).write_text(json.dumps({**record, "id": copy.name}))
    good, *bad = run_dirs(repo)
    for run_dir, how in zip(bad, BROKEN, strict=True):
        _break(run_dir, how)
    history = mm4(["history"], cwd=repo)
    assert history.returncode == 0, history.stderr
    assert good.name in history.stdout and not any(d.name in history.stdout for d in bad)
    for run_dir in bad:  # one warning each, naming the file
        assert history.stderr.count(f"skipped {run_dir / RECORD_NAME}") == 1, history.stderr
    report = mm4(["report"], cwd=repo)
    assert report.returncode == 0, report.stderr
    shown = mm4(["show", good.name], cwd=repo)
    assert shown.returncode == 0 and good.name in shown.stdout
    named = mm4(["show", bad[1].name], cwd=repo)  # asked for by name: its damage is the answer
    assert named.returncode == 2 and "queued_at is not an ISO time" in named.stderr, named.stderr
    latest = subprocess.run(
        ["python", "-c", "from mm4watch import latest_run; print(latest_run('a', project='.').name)"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert latest.stdout.strip() == good.name, latest.stderr
    diff = mm4(["diff", good.name, good.name], cwd=repo)
    assert diff.returncode == 0, diff.stderr
    assert not Path("/tmp/mm4-pwned").exists()
    assert not Path("/tmp/mm4-elsewhere").exists() and not (repo.parent / "x").exists()


def test_a_record_value_never_becomes_a_git_option(repo, tmp_path):
    from mm4watch.results.compare import commits_between

    target = tmp_path / "written"
    result = commits_between(repo, "--output=" + str(target), git(repo, "rev-parse", "HEAD"))
    assert "not a commit name" in result["note"] and not target.exists()


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_the_mirror_and_needs_go_on_past_a_bad_record(project, how):
    from mm4watch.core import config
    from mm4watch.remote import mirror
    from mm4watch.results.store import History

    write_notebook(project / "notebooks" / "a.ipynb", code("# mm4: remote\nx = 1"))
    for _ in range(2):
        assert mm4(["run", "notebooks/a.ipynb"], cwd=project).returncode == 0
    older, newer = run_dirs(project)
    _break(newer, how)
    cfg = config.load(project)
    assert mirror.choose(cfg, ("a",)).runs == (older.name,)
    assert History(cfg.results_dir, cfg.state_dir).ended() == [older.name]


# -- config and options ---------------------------------------------------------------------------


def test_a_host_that_would_be_an_ssh_option_is_refused_with_its_line(project):
    (project / "mm4.toml").write_text(
        '[run]\nexecutor = "mini"\n\n[executors.mini]\ntype = "native"\nhost = "-oProxyCommand=touch /tmp/x"\n'
    )
    done = mm4(["doctor"], cwd=project)
    assert done.returncode == 2 and "executors.mini.host" in done.stderr and "mm4.toml:6:" in done.stderr, done.stderr
    assert "begins with '-'" in done.stderr


def test_timeouts_are_finite_and_keywords_are_not_parameters(project):
    write_notebook(project / "notebooks" / "t.ipynb", code("x = 1", tags=["parameters"]), code("# mm4: remote\nx"))
    (project / "mm4.toml").write_text(f'[run]\nexecutor = "local"\ntimeout = "{"9" * 400}"\n')
    done = mm4(["run", "notebooks/t.ipynb"], cwd=project)
    assert done.returncode == 2 and "at most 365 days" in done.stderr and "run.timeout" in done.stderr
    (project / "mm4.toml").write_text('[run]\nexecutor = "local"\n')
    for flag in (["-p", "class=1"], ["-y", "lambda", "2"], ["-r", "if", "x"]):
        done = mm4(["run", "notebooks/t.ipynb", *flag], cwd=project)
        assert done.returncode == 2 and "is a Python keyword" in done.stderr, (flag, done.stderr)
    assert run_dirs(project) == []


def test_the_control_socket_folder_must_be_the_users_own(tmp_path):
    from mm4watch.core.errors import Mm4Error
    from mm4watch.remote import ssh

    folder = Path("/tmp") / f"mm4-ssh-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    before = stat.S_IMODE(folder.stat().st_mode)
    try:
        folder.chmod(0o777)  # as if someone else had made it first, open to all
        with pytest.raises(Mm4Error, match="not a folder of your own with mode 0700"):
            ssh._control_path(ssh.Target("me@mini"))
    finally:
        folder.chmod(before)
    assert ssh._control_path(ssh.Target("me@mini")).parent == folder


# -- results archives -----------------------------------------------------------------------------


def test_one_bad_member_of_a_results_archive_is_skipped_and_named(tmp_path):
    from mm4watch.core.fsutil import extract_stream

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (
            ("a.txt", b"first"),
            ("x" * 300, b"a name too long for the file system"),
            ("b.txt", b"last"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    buffer.seek(0)
    log = tmp_path / "run.log"
    extract_stream(buffer, tmp_path / "home", log=log)
    assert (tmp_path / "home" / "a.txt").read_bytes() == b"first" and (
        tmp_path / "home" / "b.txt"
    ).read_bytes() == b"last"
    said = log.read_text()
    assert said.count("not brought home") == 1 and "'xxxx" in said  # the long name; the link is never a file


# -- the terminal ---------------------------------------------------------------------------------


def test_control_characters_are_shown_not_obeyed(project):
    from mm4watch.core.terminal import visible

    assert visible("a\x1b]0;owned\x07b\x9b\x7f\tc\n") == "a\\x1b]0;owned\\x07b\\x9b\\x7f\tc\n"
    assert visible("\x1b[31mred\x1b[0m \x1b]52;c;aGk=\x07", keep_sgr=True) == "\x1b[31mred\x1b[0m \\x1b]52;c;aGk=\\x07"
    name = "title\x1b]0;owned\x07"
    write_notebook(project / "notebooks" / f"{name}.ipynb", code("# mm4: remote\nprint('\\x1b]52;c;aGk=\\x07done')"))
    done = mm4(["run", f"notebooks/{name}.ipynb", "-r", "note", "[/]"], cwd=project)
    assert done.returncode == 0, done.stderr
    for command in (
        ["history"],
        ["show", "title"],
        ["logs", run_dirs(project)[0].name],
        ["status"],
        ["queue", "--all"],
    ):
        out = mm4(command, cwd=project)
        assert out.returncode == 0, (command, out.stderr)
        assert "\x1b]" not in out.stdout and "\x07" not in out.stdout, (command, out.stdout)
    assert "title\\x1b]0;owned\\x07" in mm4(["history"], cwd=project).stdout


def test_history_on_a_terminal_reads_no_markup(project):
    """On a terminal (a real pty) history draws a table with rich: a cell is text, never markup."""
    import pty

    write_notebook(project / "notebooks" / "p.ipynb", code("note = ''", tags=["parameters"]), code("# mm4: remote"))
    assert mm4(["run", "notebooks/p.ipynb", "-r", "note", "[/]"], cwd=project).returncode == 0
    leader, follower = pty.openpty()
    child = subprocess.Popen(
        ["python", "-m", "mm4watch", "history"],
        cwd=project,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "200"},
    )
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    child.wait(timeout=60)
    os.close(leader)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.decode(errors="replace"))
    assert child.returncode == 0 and "[/]" in text and "MarkupError" not in text, text


# -- the page -------------------------------------------------------------------------------------

DISPLAYS = (
    "# mm4: remote\nfrom IPython.display import HTML, Image, display\nimport base64\n"
    "display(HTML(\"<script>document.body.setAttribute('data-pwned', 'script')</script>"
    "<table id='kept'><tr><td>a table</td></tr></table>\"))\n"
    "png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==')\n"
    "display(Image(png))"
)


def test_executed_html_runs_none_of_the_notebooks_scripts(project):
    from support import browser

    write_notebook(
        project / "notebooks" / "page.ipynb",
        code(DISPLAYS),
        markdown("<img src='nothing.png' onerror=\"document.body.setAttribute('data-pwned', 'onerror')\">"),
    )
    assert mm4(["run", "notebooks/page.ipynb"], cwd=project).returncode == 0
    assert mm4(["report"], cwd=project).returncode == 0
    (run_dir,) = run_dirs(project)
    page = run_dir / "executed.html"
    assert "Content-Security-Policy" in page.read_text()
    dom = browser("--dump-dom", page.as_uri())  # the page as the browser made it, scripts (not) run
    assert "data-pwned" not in dom.split("<body", 1)[1].split(">", 1)[0], "a script of the notebook ran in the page"
    assert 'id="kept"' in dom and "a table" in dom and 'src="data:image/png;base64,' in dom


# -- runs whose process died ----------------------------------------------------------------------

SLOW = (
    "# mm4: remote\nimport os, pathlib, time\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])\n"
    "(out / 'early.txt').write_text('1')"
)
SLOW_END = "time.sleep(6)\n(out / 'final.txt').write_text('made it')"


def _start(project: Path, notebook: str) -> subprocess.Popen[str]:
    """`mm4watch run` as from a terminal: its own session and process group, as a shell's job."""
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "mm4watch", "run", notebook],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _running(project: Path) -> Path:
    from conftest import first_run

    return first_run(project, lambda d: "Executing Cell 2" in (d / "run.log").read_text(), what="the second cell")


def _orphan_is_finished(project: Path, run_dir: Path, timeout: float = 180) -> dict:
    from conftest import wait_for
    from support import REPO  # noqa: F401  (the rig's helpers)

    from mm4watch.queue import orphans

    assert load_record(run_dir)["status"] == "running"
    time.sleep(max(0.0, orphans.GRACE_S - (time.time() - run_dir.stat().st_mtime) + 0.5))  # past the grace
    shown = mm4(["history"], cwd=project)  # the next command that reads state finds it
    assert shown.returncode == 0, shown.stderr
    return wait_for(
        lambda: (r := load_record(run_dir))["status"] != "running" and r, timeout=timeout, what="the run finished"
    )


def test_a_run_whose_process_was_killed_is_brought_home_by_the_next_command(project):
    write_notebook(project / "notebooks" / "k.ipynb", code(SLOW), code(SLOW_END))
    child = _start(project, "notebooks/k.ipynb")
    run_dir = _running(project)
    os.kill(child.pid, 9)  # the runner, in a session of its own, goes on
    child.wait(30)
    record = _orphan_is_finished(project, run_dir)
    assert record["status"] == "succeeded" and record["executor"]["reattached"] is True
    assert (run_dir / "final.txt").read_text() == "made it"


def test_a_run_with_nothing_left_is_recorded_interrupted(project):
    import psutil

    write_notebook(project / "notebooks" / "k.ipynb", code(SLOW), code("time.sleep(600)"))
    child = _start(project, "notebooks/k.ipynb")
    run_dir = _running(project)
    runners = [p for p in psutil.Process(child.pid).children(recursive=True)]
    os.kill(child.pid, 9)
    for process in runners:  # as after a power cut: nothing of the run is left
        process.kill()
    record = _orphan_is_finished(project, run_dir)
    assert record["status"] == "interrupted" and (run_dir / "early.txt").read_text() == "1"


def test_a_closed_terminal_leaves_the_run_going(project):
    import signal

    write_notebook(project / "notebooks" / "h.ipynb", code(SLOW), code(SLOW_END))
    child = _start(project, "notebooks/h.ipynb")
    run_dir = _running(project)
    os.killpg(child.pid, signal.SIGHUP)  # what the terminal's close sends its job
    child.communicate(timeout=120)
    assert child.returncode == 0
    record = load_record(run_dir)
    assert record["status"] == "succeeded" and (run_dir / "final.txt").read_text() == "made it"


@pytest.mark.usefixtures("kernel")
def test_a_docker_run_whose_process_died_comes_home_afterwards(mini_project):
    write_notebook(mini_project / "notebooks" / "k.ipynb", code(SLOW), code(SLOW_END))
    child = _start(mini_project, "notebooks/k.ipynb")
    run_dir = _running(mini_project)
    os.kill(child.pid, 9)  # the container on the Mini goes on, its results inside
    child.wait(30)
    record = _orphan_is_finished(mini_project, run_dir, timeout=300)
    assert record["status"] == "succeeded" and record["executor"]["reattached"] is True
    assert (run_dir / "final.txt").read_text() == "made it"


@pytest.mark.usefixtures("kernel")
def test_a_docker_run_outlives_its_closed_terminal(mini_project):
    import signal

    write_notebook(mini_project / "notebooks" / "h.ipynb", code(SLOW), code(SLOW_END))
    child = _start(mini_project, "notebooks/h.ipynb")
    run_dir = _running(mini_project)
    os.killpg(child.pid, signal.SIGHUP)
    child.communicate(timeout=300)
    assert child.returncode == 0 and (run_dir / "final.txt").read_text() == "made it"


# -- per notebook, not per commit -----------------------------------------------------------------


def test_one_refused_notebook_costs_a_commit_only_that_notebook(repo):
    from test_hooks import all_entries, commit

    assert mm4(["install-hooks"], cwd=repo).returncode == 0
    write_notebook(repo / "notebooks" / "good.ipynb", code("# mm4: remote\nx = 1"))
    write_notebook(repo / "notebooks" / "bad.ipynb", code("# mm4: remote executor=nope\nx = 1"))
    (repo / "notebooks" / "broken.ipynb").write_text("{ not json")
    git(repo, "add", "-A")
    commit(repo, "three notebooks")
    assert [e.notebook for e in all_entries(repo) if e.state == "queued"] == ["notebooks/good.ipynb"]
    status = mm4(["status"], cwd=repo)
    assert "notebooks/bad.ipynb in commit" in status.stdout and "nope" in status.stdout, status.stdout


def test_a_queue_row_this_version_cannot_read_is_kept_with_its_reason(repo):
    import sqlite3

    from mm4watch.queue.entries import Queue

    write_notebook(repo / "notebooks" / "q.ipynb", code("# mm4: remote\nx = 1"))
    assert mm4(["run", "notebooks/q.ipynb", "--queue"], cwd=repo).returncode == 0
    with sqlite3.connect(repo / ".mm4" / "queue.sqlite") as db:
        db.execute("update entries set trigger = 'from-the-future'")
    (repo / "mm4.toml").write_text(
        '[run]\nexecutor = "local"\ntimeout = "2m"\n[daemon]\ndebounce = "0.5s"\nnotify = false\n'
    )
    assert mm4(["start"], cwd=repo).returncode == 0
    try:
        from conftest import wait_for

        entry = wait_for(
            lambda: next((e for e in Queue(repo / ".mm4").entries(("parked",))), None), what="the row kept"
        )
        assert "cannot run" in (entry.last_error or "") and "from-the-future" in (entry.last_error or "")
        status = mm4(["status"], cwd=repo)
        assert status.returncode == 0 and f"parked:  notebooks/q.ipynb (entry {entry.id})" in status.stdout
    finally:
        mm4(["stop", "--now"], cwd=repo)


# -- a notebook is its path -----------------------------------------------------------------------


def test_notebooks_with_one_name_in_two_folders_are_told_apart(project):
    for folder in ("a", "b"):
        write_notebook(
            project / "notebooks" / folder / "train.ipynb",
            code(
                f"# mm4: remote\nimport os, pathlib\n(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'who').write_text('{folder}')"
            ),
        )
        assert mm4(["run", f"notebooks/{folder}/train.ipynb"], cwd=project).returncode == 0
    write_notebook(project / "notebooks" / ".hidden.ipynb", code("# mm4: remote\nx = 1"))
    assert mm4(["run", "notebooks/.hidden.ipynb"], cwd=project).returncode == 0
    history = json.loads(mm4(["history", "--json"], cwd=project).stdout)
    assert sorted(r["notebook"] for r in history) == [
        "notebooks/.hidden.ipynb",
        "notebooks/a/train.ipynb",
        "notebooks/b/train.ipynb",
    ]  # the dot-named notebook's runs are listed too
    by_name = mm4(["history", "--notebook", "train"], cwd=project)
    assert by_name.returncode == 2 and "notebooks/a/train.ipynb, notebooks/b/train.ipynb" in by_name.stderr
    one = mm4(["history", "--notebook", "a/train.ipynb", "--json"], cwd=project)
    assert [r["notebook"] for r in json.loads(one.stdout)] == ["notebooks/a/train.ipynb"]
    script = (
        "from mm4watch import latest_run\n"
        "print(open(latest_run('notebooks/b/train.ipynb', project='.') / 'who').read())\n"
        "try:\n    latest_run('train', project='.')\nexcept LookupError as exc:\n    print('LookupError', exc)\n"
    )
    done = subprocess.run(["python", "-c", script], cwd=project, capture_output=True, text=True)
    first, second = done.stdout.splitlines()
    assert first == "b" and second.startswith("LookupError") and "give its path" in second, done.stderr
    write_notebook(project / "notebooks" / "c.ipynb", code("# mm4: remote needs=train\nx = 1"))
    needs = mm4(["run", "notebooks/c.ipynb"], cwd=project)
    assert needs.returncode == 2 and "names 2 notebooks" in needs.stderr, needs.stderr
    assert mm4(["report"], cwd=project).returncode == 0
    page = (project / "results" / "index.html").read_text()
    assert 'data-notebook="notebooks/a/train.ipynb"' in page and 'data-notebook="notebooks/b/train.ipynb"' in page
