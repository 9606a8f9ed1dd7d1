"""Failures shown where they are, parameters like papermill, logs as the notebook printed them."""

import json

import pytest
from conftest import code, load_record, markdown, mm4, run_dirs, write_notebook

pytestmark = pytest.mark.slow


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
