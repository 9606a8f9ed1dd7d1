"""An executor from another package, registered through the entry point: run, doctor, gc, the
daemon's capacity and config errors work with it, and mm4watch is not changed for it."""

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from conftest import code, load_record, mm4, most_at_once, run_dirs, status_of, wait_for, write_notebook

TOY = Path(__file__).parent / "plugins" / "toy"


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory):
    """The toy package installed (pip, into a folder of its own) and on the path of every mm4watch process."""
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(TOY)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert list(target.glob("mm4watch_toy-*.dist-info/entry_points.txt"))
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}


@pytest.fixture
def toy_project(project, tmp_path):
    workspace = tmp_path / "toybox"
    (project / "mm4.toml").write_text(
        '[run]\nexecutor = "toy"\ntimeout = "2m"\n[daemon]\ndebounce = "0.5s"\nnotify = false\n'
        f'[executors.toy]\ntype = "toy"\nslots = 2\nworkspace = "{workspace}"\n'
    )
    return project, workspace


def test_a_plug_in_executor_runs_a_notebook(toy_env, toy_project):
    project, workspace = toy_project
    write_notebook(project / "notebooks" / "hello.ipynb", code("(output_dir() / 'hi.txt').write_text('from the toy')"))
    nb = json.loads((project / "notebooks" / "hello.ipynb").read_text())
    nb["cells"].insert(0, code("from mm4watch import output_dir"))
    (project / "notebooks" / "hello.ipynb").write_text(json.dumps(nb))
    done = mm4(["run", "notebooks/hello.ipynb"], cwd=project, env=toy_env)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = run_dirs(project)
    record = load_record(run_dir)
    assert record["status"] == "succeeded", record
    assert record["executor"]["type"] == "toy" and record["executor"]["slots"] == 2
    assert (run_dir / "hi.txt").read_text() == "from the toy" and (run_dir / "executed.ipynb").exists()
    assert list(workspace.iterdir()) == []  # released


def test_a_plug_in_adds_its_own_tag_option(toy_env, toy_project):
    """The toy declares ``flavour``: a notebook's tag may carry it and the run gets it; without the toy
    installed the same tag is an unknown option, and the error lists the options the installed
    types add (swarm's constraint)."""
    project, _ = toy_project
    write_notebook(project / "notebooks" / "minty.ipynb", code("# mm4: remote flavour=mint\nprint('ok')"))
    done = mm4(["run", "notebooks/minty.ipynb"], cwd=project, env=toy_env)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = run_dirs(project)
    assert load_record(run_dir)["executor"]["flavour"] == "mint"
    done = mm4(["check", "notebooks/minty.ipynb"], cwd=project)  # no toy on the path
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "unknown tag option 'flavour'" in said and "constraint (swarm)" in said, said
    assert mm4(["check", "notebooks/minty.ipynb"], cwd=project, env=toy_env).returncode == 0


def test_a_plug_in_registers_a_helper_process(toy_env, toy_project):
    """A type's ``helpers`` run as ``mm4watch _helper TYPE NAME ARGS`` (how the dask executor's agent
    starts); its exit code is the command's; an unknown helper is a usage error."""
    project, _ = toy_project
    done = mm4(["_helper", "toy", "hello", "world", "--loud"], cwd=project, env=toy_env)
    assert (done.returncode, done.stdout.strip()) == (0, "hello world --loud"), done.stderr
    assert mm4(["_helper", "toy", "hello"], cwd=project, env=toy_env).returncode == 3
    done = mm4(["_helper", "toy", "bye"], cwd=project, env=toy_env)
    assert done.returncode == 2 and "registers no helper 'bye'" in done.stderr


def test_doctor_and_gc_ask_the_plug_in(toy_env, toy_project):
    project, workspace = toy_project
    done = mm4(["doctor"], cwd=project, env=toy_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "executor toy (toy)" in done.stdout
        and f"ok    toy workspace: {workspace} is writable; 2 slot(s)" in done.stdout
    )
    (workspace / "mm4-toy-left-over").mkdir(parents=True)
    done = mm4(["gc"], cwd=project, env=toy_env)
    assert done.returncode == 0 and f"toy: removed 1 leftover workspace(s) under {workspace}" in done.stdout
    assert not (workspace / "mm4-toy-left-over").exists()


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ("slots = 0", ":8: executors.toy.slots must be a whole number above zero, not 0"),
        ("slots = 9", ":8: executors.toy.slots is 9: a toy takes 8 runs at once at most"),
        ("workspace = \"here\"", ":8: executors.toy.workspace 'here' must be an absolute path on that machine"),
        ("colour = \"red\"", ":8: executors.toy.colour is not a known key (known here: concurrency, harvest_every, "
                             "slots, type, workspace)"),
    ],
)  # fmt: skip
def test_config_errors_name_the_plug_in_s_keys(toy_env, project, table, said):
    (project / "mm4.toml").write_text(f'[run]\nexecutor = "toy"\n\n\n\n[executors.toy]\ntype = "toy"\n{table}\n')
    done = mm4(["doctor"], cwd=project, env=toy_env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{project / 'mm4.toml'}{said}" in done.stderr


def test_a_type_no_package_provides_is_a_config_error(project):
    (project / "mm4.toml").write_text('[run]\nexecutor = "toy"\n[executors.toy]\ntype = "toy"\n')
    done = mm4(["doctor"], cwd=project)  # the toy package is not on this process's path
    assert done.returncode == 2
    assert ':4: executors.toy.type is \'toy\'; use "dask", "docker", "local", "native" or "swarm"' in done.stderr


def _overlap(records):
    spans = [(datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"])) for r in records]
    return most_at_once(spans)


@pytest.mark.usefixtures("kernel")
def test_the_daemon_starts_as_many_runs_as_the_plug_in_says(toy_env, toy_project):
    project, _ = toy_project
    for name in ("a", "b", "c"):
        write_notebook(project / "notebooks" / f"{name}.ipynb", code("# mm4: remote\nimport time\ntime.sleep(4)"))
    assert mm4(["start"], cwd=project, env=toy_env).returncode == 0
    try:
        for name in ("a", "b", "c"):
            queued = mm4(["run", "--queue", f"notebooks/{name}.ipynb"], cwd=project, env=toy_env)
            assert queued.returncode == 0, queued.stderr
        wait_for(lambda: len([d for d in run_dirs(project) if status_of(d) == "succeeded"]) == 3, 120, "three toy runs")
    finally:
        mm4(["stop", "--now"], cwd=project, env=toy_env)
    records = [load_record(d) for d in run_dirs(project)]
    assert {r["executor"]["type"] for r in records} == {"toy"}
    assert _overlap(records) == 2, [(r["id"], r["started_at"], r["finished_at"]) for r in records]


def test_the_registry_reads_entry_points_as_importlib_metadata_does(tmp_path):
    """The scan (no importlib.metadata import at start-up) finds what importlib.metadata finds."""
    from importlib.metadata import entry_points

    from mm4watch.core import plugins

    first, second = tmp_path / "a", tmp_path / "b"
    for folder, dist, value in ((first, "box-1.0", "box_a:BoxExecutor"), (second, "box-2.0", "box_b:BoxExecutor")):
        meta = folder / f"{dist}.dist-info"
        meta.mkdir(parents=True)
        (meta / "entry_points.txt").write_text(
            f"[console_scripts]\nbox = box:main\n\n[mm4watch.executors]\n# a comment\nbox = {value}\n"
        )
    found = plugins._scan([str(first), str(second)])
    assert found == {"box": plugins.Entry("box", "box_a:BoxExecutor", "box 1.0")}  # the first on the path wins
    import sys

    ours = {name: entry.value for name, entry in plugins._scan(sys.path).items()}
    assert ours == {ep.name: ep.value for ep in entry_points(group=plugins.GROUP)}
