"""What a run's kernel ran with: environment.txt in its folder, summed up in run.json, compared by diff."""

import json
import subprocess
import sys
from importlib import metadata

import pytest
from conftest import code, load_record, mm4, run_dirs, write_notebook

from mm4watch.results import environment

pytestmark = pytest.mark.usefixtures("kernel")


def test_a_local_run_records_its_kernels_packages(project):
    write_notebook(project / "notebooks" / "a.ipynb", code("# mm4: remote\nx = 1"))
    done = mm4(["run", "notebooks/a.ipynb"], cwd=project)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(project)
    lines = (run_dir / "environment.txt").read_text().splitlines()
    # the local kernel is this interpreter: its version and its papermill, as installed
    assert lines[0].startswith(f"# python {sys.version.split()[0]} (cpython, ")
    assert f"papermill=={metadata.version('papermill')}" in lines
    names = [line.split("==")[0] for line in lines if "==" in line]
    assert names == sorted(names) and len(names) == len(set(names))
    record = load_record(run_dir)
    assert record["environment"]["packages"] == len(names) and len(record["environment"]["hash"]) == 16
    assert record["environment"]["python"] == sys.version.split()[0]
    assert "environment.txt" not in {o["path"] for o in record["outputs"]}  # ours, not the notebook's
    shown = mm4(["show", run_dir.name], cwd=project)
    assert f"python {sys.version.split()[0]}, {len(names)} packages" in shown.stdout, shown.stdout


def test_environment_can_be_turned_off(project):
    toml = project / "mm4.toml"
    toml.write_text(toml.read_text().replace("[run]\n", "[run]\nenvironment = false\n"))
    write_notebook(project / "notebooks" / "a.ipynb", code("# mm4: remote\nx = 1"))
    done = mm4(["run", "notebooks/a.ipynb"], cwd=project)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(project)
    assert not (run_dir / "environment.txt").exists() and load_record(run_dir)["environment"] is None


def test_the_probe_runs_in_the_kernels_interpreter_and_names_torch(tmp_path):
    """The probe as the runner starts it, in an interpreter that has a package named torch (a stub
    whose MPS answer is False): its line says so; a notebook's own environment.txt is not ours."""
    stub = tmp_path / "site" / "torch"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        "class backends:\n    class mps:\n        is_available = staticmethod(lambda: False)\n"
    )
    info = tmp_path / "site" / "torch-2.5.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.5.1\n")
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", environment_probe(), str(out / "environment.txt")],
        env={"PYTHONPATH": str(tmp_path / "site")}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = (out / "environment.txt").read_text().splitlines()
    assert "# torch 2.5.1, mps available: False" in text and "torch==2.5.1" in text
    assert environment.summary(out)["torch"] == "2.5.1, mps available: False"


def environment_probe():
    from mm4watch.far import environment as far_environment

    return far_environment.PROBE


def test_compare_names_added_removed_and_changed(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "environment.txt").write_text("# python 3.9.6 (cpython, /x)\nnumpy==1.26.4\nsix==1.16.0\npandas==2.2.0\n")
    (b / "environment.txt").write_text("# python 3.9.6 (cpython, /x)\nnumpy==2.0.1\npandas==2.2.0\ntabulate==0.9.0\n")
    said = environment.compare(a, b)
    assert said["added"] == [["tabulate", "0.9.0"]] and said["removed"] == [["six", "1.16.0"]]
    assert said["changed"] == [["numpy", "1.26.4", "2.0.1"]] and said["note"] == ""
    assert environment.compare(a, tmp_path)["note"] == "no environment.txt in run B"
    # written on another machine: a line that would be a pip option is not a package (rerun's requirements)
    (b / "environment.txt").write_text("--index-url=http://evil/simple==1\n-e git+x==1\nok-pkg==1.0+local\n")
    assert environment.read(b) == ({}, {"ok-pkg": "1.0+local"})
    json.dumps(said)  # what diff --json prints


def test_rerun_same_environment_says_what_it_cannot_do(repo):
    """The local executor runs in this machine's Python: nothing to build; a run without
    environment.txt has nothing to build from. Either way nothing runs."""
    from support import git

    write_notebook(repo / "notebooks" / "a.ipynb", code("# mm4: remote\nx = 1"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a")
    assert mm4(["run", "notebooks/a.ipynb"], cwd=repo).returncode == 0
    (run_dir,) = run_dirs(repo)
    said = mm4(["rerun", "--same-environment", run_dir.name], cwd=repo)
    assert said.returncode == 2 and "the local executor runs in this machine's own Python" in said.stderr
    record = json.loads((run_dir / "run.json").read_text())
    record["executor"]["type"] = "native"  # as a native run made before environment.txt was recorded
    (run_dir / "run.json").write_text(json.dumps(record))
    (run_dir / "environment.txt").unlink()
    said = mm4(["rerun", "--same-environment", run_dir.name], cwd=repo)
    assert said.returncode == 2 and "has no environment.txt" in said.stderr, said.stderr
    assert len(run_dirs(repo)) == 1  # nothing ran
