"""Numbered notebooks in a chain: a remote run loads earlier runs' results (real rig, both executors)."""

import json

import pytest
from conftest import (
    MAC_PART,
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

from mm4watch.remote import mirror

pytestmark = pytest.mark.usefixtures("kernel")

MAKE = (
    "# mm4: remote\nimport os, pathlib\n"
    "(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'table.csv').write_text('a,b\\n1,{n}\\n')"
)
LOAD = (
    "# mm4: remote{options}\nimport os, pathlib\nfrom mm4watch import latest_run\n"
    "via_helper = (latest_run('A_make') / 'table.csv').read_text()\n"
    "via_glob = (sorted(pathlib.Path('../results').glob('A_make_*'))[-1] / 'table.csv').read_text()\n"
    "try:\n"
    "    (latest_run('A_make') / 'table.csv').write_text('overwritten')\n"
    "    wrote = 'yes'\n"
    "except OSError as exc:\n"
    "    wrote = type(exc).__name__\n"
    "(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'seen.json').write_text("
    "__import__('json').dumps(dict(helper=via_helper, glob=via_glob, wrote=wrote)))"
)


def chain(project, options=""):
    write_notebook(project / "notebooks" / "A_make.ipynb", code(MAKE.format(n=1)))
    write_notebook(project / "notebooks" / "B_load.ipynb", code(LOAD.format(options=options)))


def newest(project, stem):
    return max(
        (d for d in run_dirs(project) if d.name.startswith(stem + "_")), key=lambda d: load_record(d)["queued_at"]
    )


def seen(run_dir):
    return json.loads((run_dir / "seen.json").read_text())


def native_project(tmp_path, mac, extra="", timeout="5m"):
    """A project whose runs go to the Mac-like Mini (native executor); ``extra``: its executor's settings."""
    from test_native_executor import native_toml

    root = tmp_path / "nproj"
    (root / "notebooks").mkdir(parents=True)
    (root / "requirements.txt").write_text("# nothing beyond papermill\n")
    (root / "mm4.toml").write_text(native_toml(mac, extra, timeout))
    return root


@pytest.fixture(params=["docker", pytest.param("native", marks=MAC_PART)])
def remote_project(request, tmp_path, mini, mac):
    if request.param == "docker":
        return container_project(tmp_path, mini_toml(mini)), "docker"
    return native_project(tmp_path, mac), "native"


def on_far_side(kind, request, command):
    """A shell command on the machine that ran the project's runs, as its root (the test asks for both
    machines' fixtures by name: that is what marks it ``rig`` and groups it)."""
    if kind == "docker":
        return on_mini(request.getfixturevalue("mini"), command)
    return on_mac(request.getfixturevalue("mac"), command)


def test_a_chain_in_one_call_sees_what_came_before(remote_project):
    project, kind = remote_project
    chain(project)
    done = mm4(["run", "notebooks/A_make.ipynb", "notebooks/B_load.ipynb"], cwd=project, timeout=900)
    assert done.returncode == 0, done.stderr
    a, b = newest(project, "A_make"), newest(project, "B_load")
    got = seen(b)
    assert got["helper"] == got["glob"] == "a,b\n1,1\n"
    # the docker mount is read-only (EROFS), even for root; the native mirror's modes bind for the Mini's user
    assert got["wrote"] == ("OSError" if kind == "docker" else "PermissionError")
    assert (a / "table.csv").read_text() == "a,b\n1,1\n"  # the original, intact
    record = load_record(b)
    assert record["inputs"]["mode"] == "latest" and record["inputs"]["newest"] == a.name
    assert "sent 1 new run folder" in (b / "run.log").read_text()

    # a second run sends only what is new since (the first B's folder), not A again
    done = mm4(["run", "notebooks/B_load.ipynb"], cwd=project, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "sent 1 new run folder(s)" in (newest(project, "B_load") / "run.log").read_text()
    write_notebook(project / "notebooks" / "A_make.ipynb", code(MAKE.format(n=2)))
    done = mm4(["run", "notebooks/A_make.ipynb", "notebooks/B_load.ipynb"], cwd=project, timeout=600)
    assert done.returncode == 0, done.stderr
    assert seen(newest(project, "B_load"))["helper"] == "a,b\n1,2\n"


def test_needs_sends_only_what_is_named(remote_project, request):
    project, kind = remote_project
    chain(project, options=" needs=A_make")
    write_notebook(project / "notebooks" / "C_other.ipynb", code("# mm4: remote\nx = 1"))
    (project / "mm4.toml").write_text(
        (project / "mm4.toml").read_text().replace("[run]\n", '[run]\nresults_mirror = "needs"\n')
    )
    # a missing dependency: a clear error before anything runs
    done = mm4(["run", "notebooks/B_load.ipynb"], cwd=project, timeout=600)
    assert done.returncode == 2 and "needs=A_make: no successful run of 'A_make'" in done.stderr, done.stderr
    assert run_dirs(project) == []
    for nb in ("A_make", "C_other", "B_load"):
        done = mm4(["run", f"notebooks/{nb}.ipynb"], cwd=project, timeout=900)
        assert done.returncode == 0, (nb, done.stderr)
    b = newest(project, "B_load")
    assert seen(b)["helper"] == "a,b\n1,1\n"
    assert load_record(b)["inputs"] == {"mode": "needs", "runs": [newest(project, "A_make").name]}
    assert "sent 1 new run folder(s)" in (b / "run.log").read_text()
    done = mm4(["run", "notebooks/B_load.ipynb"], cwd=project, timeout=600)  # again: nothing to send
    assert done.returncode == 0, done.stderr
    assert "nothing new to send" in (newest(project, "B_load") / "run.log").read_text()
    from mm4watch.core import config

    cfg = config.load(project)
    base = "mm4watch" if kind == "docker" else "~/mm4watch"
    on_disk = on_far_side(kind, request, f"ls -1 {mirror.remote_dir(cfg, base)}").split()
    assert on_disk == [newest(project, "A_make").name]  # not C, not B's own
    if kind == "native":  # made read-only by permissions
        mode = on_far_side(kind, request, f"stat -c %A {mirror.remote_dir(cfg, base)}/{on_disk[0]}/table.csv")
        assert "w" not in mode.strip()


def test_latest_run_says_what_to_do_when_nothing_is_visible(mini_project):
    (mini_project / "mm4.toml").write_text(
        (mini_project / "mm4.toml").read_text().replace("[run]\n", '[run]\nresults_mirror = "none"\n')
    )
    chain(mini_project)
    assert mm4(["run", "notebooks/A_make.ipynb"], cwd=mini_project, timeout=900).returncode == 0
    done = mm4(["run", "notebooks/B_load.ipynb"], cwd=mini_project, timeout=600)
    assert done.returncode == 1
    log = (newest(mini_project, "B_load") / "run.log").read_text()
    assert "no successful run of 'A_make'" in log and "needs=A_make" in log and "OperationalError" not in log


def test_rsync_stats_are_read():
    stats = "Number of files: 3\nTotal bytes sent: 1,048,911\nTotal bytes received: 35\n"
    assert mirror.bytes_sent(stats) == 1048911 and mirror.bytes_sent("nothing") == 0


def test_local_runs_record_needs(project):
    chain(project, options=" needs=A_make")
    done = mm4(["run", "notebooks/A_make.ipynb", "notebooks/B_load.ipynb"], cwd=project)
    assert done.returncode == 0, done.stderr
    b = newest(project, "B_load")
    assert load_record(b)["inputs"]["needs"] == [newest(project, "A_make").name]
    assert seen(b)["helper"] == "a,b\n1,1\n"


def test_a_damaged_mirror_folder_is_repaired_before_a_run_that_sees_it(remote_project, request):
    project, kind = remote_project
    chain(project)
    done = mm4(["run", "notebooks/A_make.ipynb", "notebooks/B_load.ipynb"], cwd=project, timeout=900)
    assert done.returncode == 0, done.stderr
    a = newest(project, "A_make")
    from mm4watch.core import config

    folder = f"{mirror.remote_dir(config.load(project), 'mm4watch' if kind == 'docker' else '~/mm4watch')}/{a.name}"
    # root, whom modes do not stop, writes into the mirror: a changed file, an added one
    on_far_side(kind, request, f"chmod -R u+w {folder} && echo damaged > {folder}/table.csv && touch {folder}/extra")
    done = mm4(["run", "notebooks/B_load.ipynb"], cwd=project, timeout=600)
    assert done.returncode == 0, done.stderr
    b = newest(project, "B_load")
    assert f"repaired 1 run folder(s) that no longer matched this machine's ({a.name})" in (b / "run.log").read_text()
    assert seen(b)["helper"] == "a,b\n1,1\n"
    assert on_far_side(kind, request, f"cat {folder}/table.csv") == "a,b\n1,1\n"
    assert on_far_side(kind, request, f"ls -A {folder}").split() == sorted(p.name for p in a.iterdir())  # no extra
    assert on_far_side(kind, request, f"stat -c %A {folder}/table.csv").strip() == "-r--r--r--"


def test_a_runs_report_page_is_not_sent_and_is_no_damage_there(tmp_path, mac, request):
    """executed.html, rendered after the run ended: the copy there neither gets it nor sends the folder again."""
    project = native_project(tmp_path, mac)
    chain(project)
    done = mm4(["run", "notebooks/A_make.ipynb", "notebooks/B_load.ipynb"], cwd=project, timeout=900)
    assert done.returncode == 0, done.stderr
    a, first_b = newest(project, "A_make"), newest(project, "B_load")
    assert mm4(["report", "--quiet"], cwd=project).returncode == 0
    assert (a / "executed.html").is_file() and (first_b / "executed.html").is_file()
    done = mm4(["run", "notebooks/B_load.ipynb"], cwd=project, timeout=600)
    assert done.returncode == 0, done.stderr
    log = (newest(project, "B_load") / "run.log").read_text()
    assert "earlier results: sent 1 new run folder(s)" in log and "repaired" not in log, log
    from mm4watch.core import config

    there = mirror.remote_dir(config.load(project), "~/mm4watch")
    for run in (a, first_b):
        listed = on_far_side("native", request, f"ls -A {there}/{run.name}").split()
        assert listed == sorted(p.name for p in run.iterdir() if p.name != "executed.html"), listed


def test_helpers_are_told_where_results_are_whatever_the_image_holds(tmp_path, mini):
    """An image with only the notebooks in it (no mm4.toml): latest_run() still finds the mirror."""
    project = container_project(tmp_path, mini_toml(mini))
    (project / "Dockerfile").write_text(
        (project / "Dockerfile").read_text().replace("COPY . /project", "COPY notebooks /project/notebooks")
    )
    chain(project)
    done = mm4(["run", "notebooks/A_make.ipynb", "notebooks/B_load.ipynb"], cwd=project, timeout=900)
    assert done.returncode == 0, done.stderr
    assert seen(newest(project, "B_load"))["helper"] == "a,b\n1,1\n"
