"""A disk that fills while a run writes: said as such, and the executed notebook is never truncated.

A real small disk (a 16 MB tmpfs mounted over the project's results/, root only: CI runs as root) and
the local executor: the runner is the same on every machine, so what it does on a full disk here it
does on the Mini too."""

import json
import os
import subprocess

import pytest
from conftest import (
    _unavailable,
    code,
    container_project,
    load_record,
    mini_toml,
    mm4,
    on_mini,
    run_dirs,
    write_notebook,
)

pytestmark = pytest.mark.usefixtures("kernel")


@pytest.fixture
def small_disk(project):
    if os.geteuid() != 0:
        _unavailable("mounting a small disk needs root (CI runs as root)")
    results = project / "results"
    results.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(results)], check=True)
    yield results
    subprocess.run(["umount", "-l", str(results)], check=False)


def _fill(leave_kb):
    """A cell that fills the run's disk until ``leave_kb`` KB are left."""
    return code(
        "import os, pathlib\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])\n"
        "st = os.statvfs(out)\n"
        f"(out / 'filler.bin').write_bytes(b'0' * (st.f_bavail * st.f_frsize - {leave_kb} * 1024))"
    )


def _disk_full(project, notebook):
    """Runs ``notebook``: it fails, and its record says the disk is full; its folder and record."""
    done = mm4(["run", notebook], project)
    assert done.returncode == 1, done.stderr
    (run_dir,) = run_dirs(project)
    record = load_record(run_dir)
    assert record["status"] == "failed" and record["error"]["ename"] == "DiskFull", record["error"]
    return run_dir, record


def test_a_notebook_that_fills_the_disk_says_so(project, small_disk):
    write_notebook(
        project / "notebooks" / "fill.ipynb",
        code("# mm4: remote\nprint('started')"),
        _fill(256),
        # the notebook's own write finds no room (what it wrote of it goes, so the run can still save)
        code(
            "try:\n    (out / 'more.bin').write_bytes(b'1' * 1024 * 1024)\nexcept OSError:\n    (out / 'more.bin').unlink()\n    raise"
        ),
        code("print('never')"),
    )
    run_dir, record = _disk_full(project, "notebooks/fill.ipynb")
    said = record["error"]["evalue"]
    assert said.startswith("the disk of local is full (") and "MB free in" in said and "mm4watch gc" in said, said
    assert record["error"]["cell"] == 2
    executed = json.loads((run_dir / "executed.ipynb").read_text())  # whole, the last save before the failure
    assert "started" in json.dumps(executed)
    assert not list(run_dir.rglob("*.part"))


def test_a_save_that_finds_no_room_leaves_the_last_whole_notebook(project, small_disk):
    write_notebook(
        project / "notebooks" / "save.ipynb",
        code("# mm4: remote\nprint('started')"),
        # leaves 1 MB, then prints 600 KB (run.log takes it too): papermill's save after this cell finds no room
        code(_fill(1024)["source"] + "\nprint('x' * 600_000)"),
        code("print('never')"),
    )
    run_dir, record = _disk_full(project, "notebooks/save.ipynb")
    assert "the disk of local is full" in record["error"]["evalue"]
    executed = (run_dir / "executed.ipynb").read_text()
    assert executed and "xxxxxxxxxx" not in executed  # the save before cell 2's, whole
    assert json.loads(executed)["cells"][1]["metadata"]["papermill"]["status"] in ("pending", "running")
    assert not list(run_dir.rglob("*.part"))


def test_results_that_find_no_room_here_stay_on_the_mini(tmp_path, mini):
    """This machine's disk fills while a docker run's results come home: the run says so, and its
    container stays on the Mini with them, whole."""
    if os.geteuid() != 0:
        _unavailable("mounting a small disk needs root (CI runs as root)")
    project = container_project(tmp_path, mini_toml(mini, extra='harvest_every = "10m"\n'))
    results = project / "results"
    results.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(results)], check=True)
    try:
        write_notebook(
            project / "notebooks" / "big.ipynb",
            code(
                "# mm4: remote\nimport os, pathlib\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])\n"
                "(out / 'big.bin').write_bytes(os.urandom(24_000_000))"
            ),
        )
        done = mm4(["run", "notebooks/big.ipynb"], project, timeout=600)
        (run_dir,) = run_dirs(project)
        record = load_record(run_dir)
    finally:
        subprocess.run(["umount", "-l", str(results)], check=False)
    assert done.returncode == 1, done.stderr
    assert record["status"] == "failed" and record["error"]["ename"] == "DiskFull", record["error"]
    said = record["error"]["evalue"]
    container = f"mm4-run-{record['key']}"
    assert said.startswith("this machine's disk is full (") and f"stay on mini (its container {container})" in said
    try:
        kept = on_mini(mini, f"docker cp {container}:/output/big.bin - | tar -xOf - | wc -c")
        assert kept.strip() == "24000000", kept  # whole, on the Mini
    finally:
        on_mini(mini, f"docker rm -f {container} >/dev/null 2>&1 || true")
