"""End to end through the real command line, a real papermill and a real kernel."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import (
    code,
    communicate,
    git,
    load_record,
    markdown,
    mm4,
    mm4_background,
    run_dirs,
    wait_for,
    write_notebook,
)

PAPERMILL_NOTEBOOKS = Path(__import__("papermill").__file__).parent / "tests" / "notebooks"

pytestmark = pytest.mark.usefixtures("kernel")


def kernels_of(run_id: str) -> list[psutil.Process]:
    """Kernel processes started for a run (they carry MM4_RUN_ID in their environment)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if (
                "ipykernel_launcher" in " ".join(proc.info["cmdline"] or [])
                and proc.environ().get("MM4_RUN_ID") == run_id
            ):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def test_success_keeps_outputs_record_and_source_untouched(repo):
    (repo / "notebooks" / "input.csv").write_text("a,b\n1,2\n")
    nb = write_notebook(
        repo / "notebooks" / "ok.ipynb",
        markdown("# title"),
        code("# mm4: remote\nimport os, json, pathlib\nfrom mm4watch import output_dir"),
        code("n = 3", tags=["parameters"]),
        code(
            "out = output_dir()\n"
            "assert str(out) == os.environ['MM4_OUTPUT_DIR']\n"
            "data = pathlib.Path('input.csv').read_text()  # cwd is the notebook's folder\n"
            "(out / 'metrics.json').write_text(json.dumps({'n': n, 'data': data}))\n"
            "(out / 'sub').mkdir()\n(out / 'sub' / 'x.txt').write_text('x' * n)\n"
            "print('hello from the kernel')"
        ),
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "add notebook")
    before = (nb.read_bytes(), nb.stat().st_mtime_ns)

    done = mm4(["run", "notebooks/ok.ipynb", "-p", "n=5"], cwd=repo)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(repo)
    assert done.stdout.strip() == str(run_dir)
    assert run_dir.name.startswith("ok_") and len(run_dir.name) == len("ok_20261128_130509")
    record = load_record(run_dir)
    assert record["status"] == "succeeded" and record["trigger"] == "manual"
    assert record["notebook"] == "notebooks/ok.ipynb"
    assert record["commit"] == {"sha": git(repo, "rev-parse", "HEAD"), "branch": "main", "dirty": False}
    assert record["parameters"] == {"n": 5}
    assert record["executor"]["type"] == "local" and record["executor"]["arch"]
    assert record["error"] is None and record["duration_s"] > 0
    assert record["started_at"] <= record["finished_at"]
    assert record["source"]["patch"] is None and not (run_dir / "source.patch").exists()
    assert {o["path"]: o["size"] for o in record["outputs"]} == {
        "metrics.json": len(json.dumps({"n": 5, "data": "a,b\n1,2\n"})),
        "sub/x.txt": 5,
    }
    assert json.loads((run_dir / "metrics.json").read_text())["n"] == 5
    executed = json.loads((run_dir / "executed.ipynb").read_text())
    assert any(
        "hello from the kernel" in "".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", [])
    )
    assert "hello from the kernel" in (run_dir / "run.log").read_text()
    assert (nb.read_bytes(), nb.stat().st_mtime_ns) == before  # the source is never written
    assert not kernels_of(run_dir.name)


def test_failure_keeps_executed_notebook_and_names_the_cell(project):
    write_notebook(
        project / "notebooks" / "bad.ipynb",
        code("# mm4: remote\nx = 1"),
        markdown("between"),
        code("raise ValueError('broken on purpose')"),
        code("print('never')"),
    )
    done = mm4(["run", "notebooks/bad.ipynb"], cwd=project)
    assert done.returncode == 1
    assert "failed in code cell 2, line 1: ValueError: broken on purpose" in done.stderr  # markdown not counted
    (run_dir,) = run_dirs(project)
    record = load_record(run_dir)
    assert record["status"] == "failed"
    assert record["error"]["cell"] == 2 and record["error"]["ename"] == "ValueError"
    assert record["commit"] is None  # not a git repository: the run still works
    executed = (run_dir / "executed.ipynb").read_text()
    assert "broken on purpose" in executed


def test_kernel_crash_is_a_failed_run_not_a_crash(project):
    write_notebook(
        project / "notebooks" / "crash.ipynb",
        code("# mm4: remote\nimport os, signal"),
        code("os.kill(os.getpid(), signal.SIGKILL)"),
    )
    done = mm4(["run", "notebooks/crash.ipynb"], cwd=project)
    assert done.returncode == 1, done.stderr
    (run_dir,) = run_dirs(project)
    record = load_record(run_dir)
    assert record["status"] == "failed"
    assert "Dead" in record["error"]["ename"] or "died" in record["error"]["evalue"].lower()
    assert (run_dir / "executed.ipynb").exists()


def test_whole_run_timeout_kills_the_kernel(project):
    write_notebook(
        project / "notebooks" / "slow.ipynb",
        # the whole run's limit: the kernel's start (1-2 s here, several on a busy machine) comes out of it
        code("# mm4: remote timeout=15s\nimport time"),
        code("print('started', flush=True)"),
        code("time.sleep(600)"),
    )
    t0 = time.monotonic()
    done = mm4(["run", "notebooks/slow.ipynb"], cwd=project)
    assert done.returncode == 1
    assert time.monotonic() - t0 < 60
    (run_dir,) = run_dirs(project)
    record = load_record(run_dir)
    assert record["status"] == "timeout" and record["timeout_s"] == 15
    assert record["error"]["ename"] == "Timeout" and record["error"]["cell"] == 2
    executed = json.loads((run_dir / "executed.ipynb").read_text())
    assert any("started" in "".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert not kernels_of(run_dir.name)


def test_timeout_flag_overrides_the_tag(project):
    write_notebook(project / "notebooks" / "slow.ipynb", code("# mm4: remote timeout=1h\nimport time\ntime.sleep(600)"))
    done = mm4(["run", "notebooks/slow.ipynb", "--timeout", "3s"], cwd=project)
    assert done.returncode == 1
    assert load_record(run_dirs(project)[0])["status"] == "timeout"


def test_interrupt_leaves_status_interrupted_and_no_kernel(project):
    write_notebook(project / "notebooks" / "long.ipynb", code("# mm4: remote\nimport time"), code("time.sleep(600)"))
    child = subprocess.Popen(
        [sys.executable, "-m", "mm4watch", "run", "notebooks/long.ipynb"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    run_id = None
    while time.monotonic() < deadline:
        dirs = run_dirs(project)
        if dirs and kernels_of(dirs[0].name):
            run_id = dirs[0].name
            break
        time.sleep(0.2)
    assert run_id, "the kernel never started"
    time.sleep(1.0)
    child.send_signal(signal.SIGINT)
    out, err = communicate(child, 120)
    assert child.returncode == 130, err
    record = load_record(project / "results" / run_id)
    assert record["status"] == "interrupted" and record["finished_at"]
    assert (project / "results" / run_id / "executed.ipynb").exists()
    deadline = time.monotonic() + 10
    while kernels_of(run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not kernels_of(run_id)


def test_dirty_run_saves_the_patch(repo):
    nb = write_notebook(repo / "notebooks" / "d.ipynb", code("# mm4: remote\nx = 1"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "d")
    write_notebook(nb, code("# mm4: remote\nx = 2\nprint(x)"))
    done = mm4(["run", "notebooks/d.ipynb"], cwd=repo)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(repo)
    record = load_record(run_dir)
    assert record["commit"]["dirty"] is True and record["source"]["patch"] == "source.patch"
    lines = (run_dir / "source.patch").read_text().splitlines()
    assert any(ln.startswith("-") and "x = 1" in ln for ln in lines)  # HEAD's line out
    assert any(ln.startswith("+") and "x = 2" in ln for ln in lines)  # the run's line in


def test_bad_notebook_is_refused_before_any_folder(project):
    (project / "notebooks" / "broken.ipynb").write_text('{"cells": [')
    done = mm4(["run", "notebooks/broken.ipynb"], cwd=project)
    assert done.returncode == 2
    assert "not valid notebook JSON" in done.stderr and "Traceback" not in done.stderr
    assert run_dirs(project) == []


def test_unknown_executor_in_tag_is_a_usage_error(project):
    write_notebook(project / "notebooks" / "x.ipynb", code("# mm4: remote executor=nowhere\nx = 1"))
    done = mm4(["run", "notebooks/x.ipynb"], cwd=project)
    assert done.returncode == 2 and "unknown executor 'nowhere'" in done.stderr
    assert run_dirs(project) == []


def test_bad_config_is_a_usage_error_naming_the_line(project):
    (project / "mm4.toml").write_text('[run]\nexecutor = "local"\ntimout = "1h"\n')
    write_notebook(project / "notebooks" / "x.ipynb", code("x = 1"))
    done = mm4(["run", "notebooks/x.ipynb"], cwd=project)
    assert done.returncode == 2
    assert "mm4.toml:3: run.timout is not a known key" in done.stderr


@pytest.mark.parametrize(
    "name, status, ename",
    [
        ("simple_execute.ipynb", "succeeded", None),
        ("complex_parameters.ipynb", "failed", "SyntaxError"),  # it has a deliberate "= 2" line
        ("broken1.ipynb", "failed", "AssertionError"),
        ("sysexit.ipynb", "succeeded", None),
        ("sysexit0.ipynb", "succeeded", None),
        ("sysexit1.ipynb", "failed", "SystemExit"),
        ("systemexit.ipynb", "succeeded", None),
        ("line_magic_error.ipynb", "failed", "CellExecutionError"),  # papermill has no ename for it
    ],
)
def test_papermills_own_test_notebooks(project, name, status, ename):
    shutil.copy(PAPERMILL_NOTEBOOKS / name, project / "notebooks" / name)
    done = mm4(["run", f"notebooks/{name}", "-p", "msg=hi"], cwd=project)
    assert done.returncode == (0 if status == "succeeded" else 1), done.stderr
    (run_dir,) = run_dirs(project)
    record = load_record(run_dir)
    assert record["status"] == status
    assert (record["error"] or {}).get("ename") == ename
    assert (run_dir / "executed.ipynb").exists()
    if name == "broken1.ipynb":
        assert record["error"]["cell"] == 6  # counted in the notebook as written


def test_more_terms_while_a_run_stops_do_not_cut_its_record_short(project):
    """A cancelled run is sent SIGTERM again and again while it stops (a daemon's `stop --now` asks on
    each round): the first stops it, the rest do not interrupt the stop; its record is final."""
    write_notebook(  # a kernel that ignores TERM: the stop takes its grace period, TERMs keep coming meanwhile
        project / "notebooks" / "long.ipynb",
        code("# mm4: remote\nimport signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)"),
        code("time.sleep(600)"),
    )
    child = mm4_background(["run", "notebooks/long.ipynb"], project)
    run_dir = wait_for(
        lambda: next((d for d in run_dirs(project) if "Executing Cell 2" in (d / "run.log").read_text()), None),
        120,
        "cell 2",
    )
    for _ in range(150):  # TERMs a tenth of a second apart, until it has stopped (its grace period is 10 s)
        if child.poll() is not None:
            break
        child.send_signal(signal.SIGTERM)
        time.sleep(0.1)
    child.communicate(timeout=120)
    record = load_record(run_dir)
    assert record["status"] in ("interrupted", "cancelled") and record["finished_at"], record
    assert kernels_of(run_dir.name) == []
