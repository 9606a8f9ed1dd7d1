"""Failures shown where they are, parameters like papermill, logs as the notebook printed them."""

import json

import pytest
from conftest import code, load_record, markdown, mm4, run_dirs, write_notebook

pytestmark = pytest.mark.usefixtures("kernel")


def test_a_failure_names_the_code_cell_and_line_as_jupyter_shows_them(project):
    write_notebook(
        project / "notebooks" / "f.ipynb",
        markdown("# A title: not a code cell"),
        code("# mm4: remote\nn = 0", tags=["parameters"]),  # papermill injects its cell after this one
        code("a = 1\nb = n - 1\nprint(a / b)"),
    )
    done = mm4(["run", "notebooks/f.ipynb", "-p", "n=1"], cwd=project)
    assert done.returncode == 1
    assert "failed in code cell 2, line 3: ZeroDivisionError: division by zero" in done.stderr, done.stderr
    (run_dir,) = run_dirs(project)
    error = load_record(run_dir)["error"]
    assert (error["code_cell"], error["line"], error["cell"]) == (2, 3, 2)
    assert error["execution_count"] and any("----> 3 print(a / b)" in line for line in error["traceback"])
    log = (run_dir / "run.log").read_text()
    assert "----> 3 print(a / b)" in log and "\x1b[" not in log  # the traceback, without colours
    shown = mm4(["show", run_dir.name], cwd=project).stdout
    assert "code cell 2, line 3" in shown and "----> 3 print(a / b)" in shown and "\x1b[" not in shown


def test_parameters_like_papermill_through_the_command_line(project):
    write_notebook(
        project / "notebooks" / "p.ipynb",
        code("# mm4: remote\nepochs = 1\nlayers = []\nname = ''\nopts = {}\nflag = None", tags=["parameters"]),
        code(
            "import json, os, pathlib\n(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'p.json').write_text("
            "json.dumps(dict(epochs=epochs, layers=layers, name=name, opts=opts, flag=flag)))"
        ),
    )
    (project / "base.yaml").write_text("epochs: 5\nlayers: [64, 32]\n")
    done = mm4(
        ["run", "notebooks/p.ipynb", "-f", "base.yaml", "-p", "epochs=20", "-y", "opts", "{lr: 0.1}",
         "-r", "name", "007", "-p", "flag=True"],
        cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(project)
    got = json.loads((run_dir / "p.json").read_text())
    assert got == {"epochs": 20, "layers": [64, 32], "name": "007", "opts": {"lr": 0.1}, "flag": True}
    assert load_record(run_dir)["parameters"] == got
    bad = mm4(["run", "notebooks/p.ipynb", "-y", "layers", "[1, 2"], cwd=project)
    assert bad.returncode == 2 and "-y layers looks like JSON or YAML but does not parse" in bad.stderr
    assert len(run_dirs(project)) == 1  # nothing ran


def test_logs_show_lines_as_the_notebook_printed_them(project):
    write_notebook(
        project / "notebooks" / "l.ipynb", code("# mm4: remote\nfor word in ('one', 'two', 'three'):\n    print(word)")
    )
    assert mm4(["run", "notebooks/l.ipynb"], cwd=project).returncode == 0
    (run_dir,) = run_dirs(project)
    shown = mm4(["logs", run_dir.name], cwd=project).stdout
    assert "one\ntwo\nthree\n" in shown, shown


def test_queue_json_uses_iso_times(project):
    from datetime import datetime

    write_notebook(project / "notebooks" / "q.ipynb", code("# mm4: remote\nx = 1"))
    assert mm4(["run", "--queue", "notebooks/q.ipynb"], cwd=project).returncode == 0
    (entry,) = json.loads(mm4(["queue", "--json"], cwd=project).stdout)
    assert datetime.fromisoformat(entry["queued_at"]).tzinfo is not None


def test_gc_on_a_local_executor_is_a_no_op(project):
    done = mm4(["gc"], cwd=project)
    assert done.returncode == 0 and "nothing to do" in done.stdout


def test_a_dockerfile_that_copies_no_code_still_runs(mini_project):
    (mini_project / "Dockerfile").write_text(
        'FROM python:3.11-slim\nRUN pip install --no-cache-dir "papermill>=2.6" "ipykernel>=6.29"\nWORKDIR /project\n'
    )
    write_notebook(mini_project / "notebooks" / "nocode.ipynb", code("# mm4: remote\nimport os\nprint(os.getcwd())"))
    done = mm4(["run", "notebooks/nocode.ipynb"], cwd=mini_project, timeout=900)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(mini_project)
    log = (run_dir / "run.log").read_text()
    assert "/project/notebooks" in log and "is empty here" in log and "COPY . /project" in log


def test_near_miss_tags_are_reported_by_check_and_the_hook(project):
    nb = project / "notebooks"
    write_notebook(nb / "typo.ipynb", markdown("notes"), code("x = 1"), code("# mm4: remtoe\ny = 2"))
    write_notebook(nb / "nocolon.ipynb", code("#mm4 remote\nx = 1"))
    write_notebook(nb / "good.ipynb", code("# mm4: remote\nx = 1"), code("# mm4 is a project name, not a tag"))
    done = mm4(["check", "notebooks/typo.ipynb", "notebooks/nocolon.ipynb"], cwd=project)
    assert done.returncode == 1
    assert "notebooks/typo.ipynb: code cell 2, line 1: '# mm4: remtoe' looks like the mm4watch tag" in done.stderr
    assert "notebooks/nocolon.ipynb: code cell 1, line 1" in done.stderr
    ok = mm4(["check", "notebooks/good.ipynb"], cwd=project)
    assert ok.returncode == 0 and "ok: 1 notebook" in ok.stdout
    import subprocess

    hook = subprocess.run(
        ["mm4watch-hook", "check", "notebooks/typo.ipynb"], cwd=project, capture_output=True, text=True
    )
    assert hook.returncode == 1 and "remtoe" in hook.stderr


def test_the_daemon_says_what_it_refused_and_what_it_waits_for(project):
    from conftest import mm4_background, notebook_json, wait_for
    from test_daemon import jupyter_save

    said = project / "notifications.txt"
    (project / "mm4.toml").write_text(
        '[run]\nexecutor = "local"\n[daemon]\ndebounce = "0.5s"\n'
        f'notify_command = "echo \\"$MM4_RUN_TITLE: $MM4_RUN_MESSAGE\\" >> {said}"\n'
    )
    nb = project / "notebooks"
    for name in ("typo", "broken", "option", "slow"):
        write_notebook(nb / f"{name}.ipynb", code("x = 0"))
    assert mm4(["start"], cwd=project).returncode == 0
    try:
        jupyter_save(nb / "typo.ipynb", notebook_json(code("# mm4: remtoe\nx = 1")))
        (nb / "broken.ipynb").write_text('{"cells": [')
        jupyter_save(nb / "option.ipynb", notebook_json(code("# mm4: remote executor=nowhere\nx = 1")))

        def refused():
            out = mm4(["status"], cwd=project).stdout
            return out if out.count("refused:") >= 3 else None

        shown = wait_for(refused, 30, "three refused saves in status")
        assert "notebooks/typo.ipynb: code cell 1, line 1: '# mm4: remtoe'" in shown
        assert "broken.ipynb" in shown and "not valid notebook JSON" in shown
        assert "unknown executor 'nowhere'" in shown
        assert run_dirs(project) == []
        told = wait_for(lambda: said.exists() and said.read_text().count("not queued") >= 3 and said.read_text(), 20)
        assert "typo.ipynb not queued" in told and "remtoe" in told

        jupyter_save(nb / "slow.ipynb", notebook_json(code("# mm4: remote\nimport time\ntime.sleep(8)")))
        wait_for(lambda: run_dirs(project), 30, "the slow run to start")
        stopping = mm4_background(["stop"], project)
        wait_for(lambda: "stopping" in mm4(["status"], cwd=project).stdout, 20, "status to say stopping")
        out, _ = stopping.communicate(timeout=60)
        assert "waiting for slow (" in out and "--now" in out
    finally:
        mm4(["stop", "--now"], cwd=project)


def three_cells(project):
    return write_notebook(
        project / "notebooks" / "p3.ipynb",
        code("# mm4: remote\nimport time\nprint('first output')"),
        code("time.sleep(1.0)\nprint('second output')"),
        code("values = [1, 2]  # [brackets] are text\ntime.sleep(1.0)\nprint('third output')"),
    )


def test_a_foreground_run_on_a_terminal_shows_one_live_line(project):
    import os
    import subprocess
    import sys

    three_cells(project)
    master, slave = os.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "mm4watch", "run", "notebooks/p3.ipynb"],
        cwd=project, stdin=slave, stdout=subprocess.PIPE, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed: the run is over
            break
        if not chunk:
            break
        seen += chunk
    out, _ = child.communicate(timeout=120)
    os.close(master)
    screen = seen.decode(errors="replace")
    assert child.returncode == 0, screen
    assert "cell 2/3: time.sleep(1.0)" in screen and "values = [1, 2]" in screen  # the live line
    assert "succeeded after" in screen
    (run_dir,) = run_dirs(project)
    assert out.decode().strip() == str(run_dir) and str(run_dir) not in screen  # the result, once


def test_off_a_terminal_one_line_per_phase_and_log_output_streams(project):
    three_cells(project)
    done = mm4(["run", "notebooks/p3.ipynb", "--log-output"], cwd=project)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "mm4watch: starting the kernel" in lines and "mm4watch: bringing results home" in lines
    assert any(line.startswith("mm4watch: cell 2/3") for line in lines)
    assert "second output" in lines and "\x1b[" not in done.stderr
    (run_dir,) = run_dirs(project)
    assert done.stdout.strip() == str(run_dir)
    quiet = mm4(["run", "notebooks/p3.ipynb"], cwd=project)
    assert "second output" not in quiet.stderr  # only with --log-output


def test_status_shows_what_a_daemon_run_is_doing(project):
    from conftest import notebook_json, wait_for
    from test_daemon import jupyter_save

    (project / "mm4.toml").write_text('[run]\nexecutor = "local"\n[daemon]\ndebounce = "0.5s"\nnotify = false\n')
    nb = write_notebook(project / "notebooks" / "d.ipynb", code("x = 0"))
    assert mm4(["start"], cwd=project).returncode == 0
    try:
        jupyter_save(nb, notebook_json(code("# mm4: remote\nimport time"), code("time.sleep(6)")))
        shown = wait_for(lambda: "cell 2/2: time.sleep(6)" in (out := mm4(["status"], cwd=project).stdout) and out,
                         40, "status to show the cell")  # fmt: skip
        assert "running: notebooks/d.ipynb" in shown
    finally:
        mm4(["stop", "--now"], cwd=project)


def test_a_cancelled_run_leaves_no_kernel_traceback_in_its_log(project):
    from conftest import first_run, mm4_background

    write_notebook(project / "notebooks" / "c.ipynb", code("# mm4: remote\nimport time"), code("time.sleep(60)"))
    child = mm4_background(["run", "notebooks/c.ipynb"], project)
    run_dir = first_run(project, lambda d: "Executing Cell 2" in (d / "run.log").read_text(), what="cell 2 to start")
    assert mm4(["cancel", run_dir.name], cwd=project).returncode == 0
    child.communicate(timeout=60)
    log = (run_dir / "run.log").read_text()
    assert load_record(run_dir)["status"] == "cancelled"
    assert "zmq" not in log and "Traceback" not in log, log[-2000:]


def test_several_notebooks_in_one_call_stop_at_the_first_failure_unless_keep_going(project):
    nb = project / "notebooks"
    write_notebook(nb / "10_ok.ipynb", code("# mm4: remote\nx = 1"))
    write_notebook(nb / "20_bad.ipynb", code("# mm4: remote\nraise ValueError('no')"))
    write_notebook(nb / "30_after.ipynb", code("# mm4: remote\nx = 3"))
    names = ["notebooks/10_ok.ipynb", "notebooks/20_bad.ipynb", "notebooks/30_after.ipynb"]
    done = mm4(["run", *names], cwd=project)
    assert done.returncode == 1 and "not run: notebooks/30_after.ipynb" in done.stderr
    assert sorted(d.name.split("_2026")[0] for d in run_dirs(project)) == ["10_ok", "20_bad"]
    going = mm4(["run", "--keep-going", *names], cwd=project)
    assert going.returncode == 1 and len(run_dirs(project)) == 5
    assert len(going.stdout.split()) == 3  # each run folder, once
    queued = mm4(["run", "--queue", *names], cwd=project)
    assert queued.returncode == 0 and queued.stdout.count("queued notebooks/") == 3
