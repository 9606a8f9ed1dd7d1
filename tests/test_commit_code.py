"""A run's record never lies about its code: a commit run and a rerun execute the commit's project
files, whatever the work tree holds; a run of a dirty tree records the diff of the code it shipped."""

import json
import subprocess
from pathlib import Path

import pytest
from conftest import code, git, load_record, mm4, run_dirs, wait_for, write_notebook

HELPER = "def value():\n    return {}\n"


def helper_project(root: Path) -> Path:
    """``src/helper.py`` committed returning 42, a tagged notebook that writes what it returns."""
    if not (root / ".git").exists():
        git(root, "init", "-q", "-b", "main")
    gitignore = root / ".gitignore"
    gitignore.write_text("results/\n.mm4/\n")
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / "__init__.py").write_text("")
    (root / "src" / "helper.py").write_text(HELPER.format(42))
    write_notebook(
        root / "notebooks" / "uses.ipynb",
        code(
            "# mm4: remote\nimport os, sys, pathlib\nsys.path.insert(0, os.path.dirname(os.getcwd()))\n"
            "from src.helper import value\n"
            "(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'value.txt').write_text(str(value()))\n"
            "print('value', value())"
        ),
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "helper returns 42")
    return root


def ran(run_dir: Path) -> str:
    record = load_record(run_dir)
    assert record["status"] == "succeeded", (record.get("error"), (run_dir / "run.log").read_text()[-2000:])
    return (run_dir / "value.txt").read_text()


def newest(root: Path) -> Path:
    return max(run_dirs(root), key=lambda d: load_record(d)["queued_at"])


def check_commit_code(root: Path) -> None:
    """On whatever executor ``root``'s mm4.toml names: clean run, dirty run, and reruns of both."""
    helper_project(root)
    sha = git(root, "rev-parse", "HEAD")
    done = mm4(["run", "notebooks/uses.ipynb"], cwd=root, timeout=900)
    assert done.returncode == 0, done.stderr
    clean = newest(root)
    assert ran(clean) == "42" and load_record(clean)["commit"] == {"sha": sha, "branch": "main", "dirty": False}

    (root / "src" / "helper.py").write_text(HELPER.format(43))  # edited, not committed
    done = mm4(["run", "notebooks/uses.ipynb"], cwd=root, timeout=900)
    assert done.returncode == 0, done.stderr
    dirty = newest(root)
    record = load_record(dirty)
    assert ran(dirty) == "43" and record["commit"]["dirty"] is True and record["source"]["patch"] == "source.patch"
    patch = (dirty / "source.patch").read_text()
    assert "+    return 43" in patch and "-    return 42" in patch, patch  # the code it shipped, not only the notebook

    # a rerun of the clean run runs the commit's code, though the work tree says 43
    again = mm4(["rerun", "--", load_record(clean)["id"]], cwd=root, timeout=900)
    assert again.returncode == 0, again.stderr
    rerun = newest(root)
    assert ran(rerun) == "42", (rerun / "run.log").read_text()[-2000:]
    assert load_record(rerun)["commit"]["dirty"] is False and load_record(rerun)["commit"]["sha"] == sha

    # a rerun of the dirty run is the commit plus its patch: 43 again, after the tree went back to 42
    (root / "src" / "helper.py").write_text(HELPER.format(42))
    again = mm4(["rerun", "--", record["id"]], cwd=root, timeout=900)
    assert again.returncode == 0, again.stderr
    redo = newest(root)
    assert ran(redo) == "43" and load_record(redo)["commit"]["dirty"] is True
    assert (root / "src" / "helper.py").read_text() == HELPER.format(42)  # the work tree untouched
    assert git(root, "status", "--porcelain") == ""  # nor the index


@pytest.mark.usefixtures("kernel")
def test_a_commit_run_runs_the_commits_code_on_the_local_executor(repo):
    check_commit_code(repo)


@pytest.mark.usefixtures("kernel")
def test_a_commit_triggered_run_runs_the_commit_not_the_work_tree(repo):
    root = helper_project(repo)
    (root / "mm4.toml").write_text('[run]\nexecutor = "local"\ntimeout = "2m"\n[daemon]\nnotify = false\n')
    assert mm4(["install-hooks"], cwd=root).returncode == 0
    nb = root / "notebooks" / "uses.ipynb"
    text = json.loads(nb.read_text())
    text["cells"][0]["source"] += "\nprint('committed')"
    nb.write_text(json.dumps(text))
    (root / "src" / "helper.py").write_text(HELPER.format(43))  # edited, left out of the commit
    git(root, "add", "notebooks/uses.ipynb", "mm4.toml")
    started = mm4(["start"], cwd=root)
    assert started.returncode == 0, started.stderr
    try:
        done = subprocess.run(["git", "commit", "-q", "-m", "notebook"], cwd=root, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        sha = git(root, "rev-parse", "HEAD")
        run_dir = wait_for(
            lambda: next(
                (d for d in run_dirs(root) if (d / "run.json").exists() and load_record(d).get("finished_at")), None
            ),
            timeout=120,
            what="the commit's run",
        )
    finally:
        mm4(["stop", "--now"], cwd=root)
    record = load_record(run_dir)
    assert record["commit"]["sha"] == sha and record["commit"]["dirty"] is False
    assert ran(run_dir) == "42"  # the commit's helper, not the work tree's 43
    assert (root / "src" / "helper.py").read_text() == HELPER.format(43)


@pytest.mark.usefixtures("kernel")
def test_a_save_run_joined_by_a_commit_of_other_code_stays_dirty(repo):
    """A run of a dirty tree that a commit of the same notebook joins: clean only if the commit
    holds the code it ran; here it does not (the helper edit is left out), so it keeps its patch."""
    from mm4watch.core import git as mgit
    from mm4watch.results.records import amend_triggers

    root = helper_project(repo)
    (root / "src" / "helper.py").write_text(HELPER.format(43))
    done = mm4(["run", "notebooks/uses.ipynb"], cwd=root)
    assert done.returncode == 0, done.stderr
    run_dir = newest(root)
    assert ran(run_dir) == "43"
    git(root, "commit", "-q", "--allow-empty", "-m", "nothing of the helper")
    sha = git(root, "rev-parse", "HEAD")
    trigger = [{"trigger": "manual", "at": 1.0}, {"trigger": "commit", "at": 2.0, "commit": sha}]
    amended = amend_triggers(run_dir, trigger, lambda tree, s: mgit.same_code(root, tree, s))
    assert amended is not None and amended.commit["dirty"] is True and amended.source["patch"] == "source.patch"
    # once the helper is committed too, the same join makes it that commit's run, clean
    git(root, "commit", "-q", "-am", "helper 43")
    sha = git(root, "rev-parse", "HEAD")
    trigger.append({"trigger": "commit", "at": 3.0, "commit": sha})
    amended = amend_triggers(run_dir, trigger, lambda tree, s: mgit.same_code(root, tree, s))
    assert amended is not None and amended.commit == {"sha": sha, "branch": None, "dirty": False}


@pytest.mark.usefixtures("kernel")
def test_a_commit_run_runs_the_commits_code_on_the_docker_executor(mini_project):
    check_commit_code(mini_project)


@pytest.mark.usefixtures("kernel")
def test_a_commit_run_runs_the_commits_code_on_the_native_executor(tmp_path, mac):
    from test_native_executor import native_toml

    root = tmp_path / "nproj"
    (root / "notebooks").mkdir(parents=True)
    (root / "requirements.txt").write_text("# nothing beyond papermill\n")
    (root / "mm4.toml").write_text(native_toml(mac))
    check_commit_code(root)
