import shutil

import pytest
from conftest import REPO, code, load_record, mm4, run_dirs, write_notebook

from mm4watch import latest_run, output_dir
from mm4watch.core.errors import RunNotFound


def test_output_dir_from_environment(tmp_path, monkeypatch):
    target = tmp_path / "run"
    monkeypatch.setenv("MM4_OUTPUT_DIR", str(target))
    assert output_dir() == target and target.is_dir()


def test_output_dir_by_hand_is_a_scratch_folder(project, monkeypatch):
    monkeypatch.chdir(project / "notebooks")
    assert output_dir() == project.resolve() / ".mm4" / "scratch"


def test_latest_run_without_runs(project):
    with pytest.raises(RunNotFound, match="no successful run of 'nb'"):
        latest_run("nb", project=project)
    with pytest.raises(LookupError):
        latest_run("nb", successful=False, project=project)


@pytest.mark.usefixtures("kernel")
def test_examples_run_and_a_later_notebook_reads_results(project):
    """The shipped examples, end to end: 00 writes metrics and a figure, 01 reads them back."""
    for name in ("00_test_remote.ipynb", "01_read_results.ipynb"):
        shutil.copy(REPO / "notebooks" / name, project / "notebooks" / name)
    write_notebook(project / "notebooks" / "00_test_remote_fail.ipynb", code("raise RuntimeError('x')"))
    done = mm4(["run", "notebooks/00_test_remote.ipynb", "-p", "n_samples=50"], cwd=project)
    assert done.returncode == 0, done.stderr
    (first,) = run_dirs(project)
    record = load_record(first)
    assert {o["path"] for o in record["outputs"]} == {"metrics.json", "histogram.png"}
    assert (first / "histogram.png").read_bytes()[:4] == b"\x89PNG"
    assert latest_run("00_test_remote", project=project) == first
    assert latest_run("notebooks/00_test_remote.ipynb", project=project) == first

    done = mm4(["run", "notebooks/01_read_results.ipynb"], cwd=project)
    assert done.returncode == 0, done.stderr
    second = next(d for d in run_dirs(project) if d.name.startswith("01_"))
    assert first.name in (second / "executed.ipynb").read_text()
