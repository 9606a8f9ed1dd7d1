"""A disk that fills while a run writes: said as such, and the executed notebook is never truncated.

Real small disks (16 MB tmpfs, mounted as root: CI runs as root): over the project's results/ (the local
executor writes there; this machine's disk as results come home from a docker Mini) and over the
run folders of the Mac-like Mini (mounted into its mount namespace from outside)."""

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
    on_mac,
    on_mini,
    run_dirs,
    write_notebook,
)
from test_results_chain import native_project

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


def _no_room_notebook(path):
    """A notebook that fills its disk, then whose own write finds no room (what it wrote of that goes,
    so the run can still save): a DiskFull failure in cell 2."""
    return write_notebook(
        path,
        code("# mm4: remote\nprint('started')"),
        _fill(256),
        code(
            "try:\n    (out / 'more.bin').write_bytes(b'1' * 1024 * 1024)\nexcept OSError:\n"
            "    (out / 'more.bin').unlink()\n    raise"
        ),
        code("print('never')"),
    )


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
    _no_room_notebook(project / "notebooks" / "fill.ipynb")
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


def test_results_that_find_no_room_here_stay_on_the_mini_and_come_with_fetch(tmp_path, mini):
    """This machine's disk fills while a docker run's results come home: the run says so, its container
    stays on the Mini with them, whole; once there is room, `mm4watch fetch` brings them and records
    the run as it ended there."""
    if os.geteuid() != 0:
        _unavailable("mounting a small disk needs root (CI runs as root)")
    project = container_project(tmp_path, mini_toml(mini, extra='harvest_every = "10m"\n'))
    results = project / "results"
    results.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(results)], check=True)
    container = None
    try:
        write_notebook(
            project / "notebooks" / "big.ipynb",
            code(
                "# mm4: remote\nimport os, pathlib\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])\n"
                "(out / 'big.bin').write_bytes(os.urandom(24_000_000))"
            ),
        )
        done = mm4(["run", "notebooks/big.ipynb"], project, timeout=600)
        assert done.returncode == 1, done.stderr
        (run_dir,) = run_dirs(project)
        record = load_record(run_dir)
        assert record["status"] == "failed" and record["error"]["ename"] == "DiskFull", record["error"]
        said = record["error"]["evalue"]
        container = f"mm4-run-{record['key']}"
        assert said.startswith("this machine's disk is full (") and f"stay on mini (its container {container})" in said
        assert record["error"]["kept"] == f"its container {container}"
        kept = on_mini(mini, f"docker cp {container}:/output/big.bin - | tar -xOf - | wc -c")
        assert kept.strip() == "24000000", kept  # whole, on the Mini

        subprocess.run(["mount", "-o", "remount,size=64m", str(results)], check=True)  # room again
        fetched = mm4(["fetch", record["id"]], project, timeout=600)
        assert fetched.returncode == 0, fetched.stderr
        record = load_record(run_dir)
        assert record["status"] == "succeeded" and record["error"] is None, record["error"]
        assert (run_dir / "big.bin").stat().st_size == 24_000_000
        assert "big.bin" in {o["path"] for o in record["outputs"]}
        assert any("came home later, with mm4watch fetch" in w for w in record["warnings"])
        assert on_mini(mini, f"docker ps -aq --filter name=^{container}$").strip() == ""  # gone once home
        again = mm4(["fetch", record["id"]], project)
        assert again.returncode == 2 and "left nothing on its machine to fetch" in again.stderr, again.stderr
    finally:
        if container:
            on_mini(mini, f"docker rm -f {container} >/dev/null 2>&1 || true")
        subprocess.run(["umount", "-l", str(results)], check=False)


def test_a_full_disk_on_the_native_mini_says_so(tmp_path, mac):
    """The Mini's disk fills under a native run: the record says whose disk, where and how much is free."""
    from mm4watch.core import config

    if os.geteuid() != 0:
        _unavailable("mounting a small disk needs root (CI runs as root)")
    project = native_project(tmp_path, mac, timeout="10m")
    runs = f"/home/me/mm4watch/{config.load(project).project_key}/runs"
    on_mac(mac, f"mkdir -p {runs}", user="me")
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", mac["MAC_CONTAINER"]], capture_output=True, text=True, check=True
    ).stdout.strip()
    inside = ["nsenter", "-t", pid, "-m"]
    subprocess.run([*inside, "mount", "-t", "tmpfs", "-o", "size=16m,uid=501,gid=501", "tmpfs", runs], check=True)
    try:
        _no_room_notebook(project / "notebooks" / "fill.ipynb")
        run_dir, record = _disk_full(project, "notebooks/fill.ipynb")
    finally:
        subprocess.run([*inside, "umount", "-l", runs], check=False)
    said = record["error"]["evalue"]
    assert said.startswith("the disk of gpu is full (") and f"MB free in {runs}/" in said, said
    assert "mm4watch gc" in said and record["error"]["cell"] == 2
    assert "started" in (run_dir / "executed.ipynb").read_text()  # whole, home
