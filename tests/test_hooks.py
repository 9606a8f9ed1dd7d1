"""Git hooks with real repositories, real commits, and the real pre-commit framework."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    REPO,
    code,
    first_run,
    git,
    load_record,
    mm4,
    notebook_json,
    run_dirs,
    status_of,
    wait_for,
    write_notebook,
)

from mm4watch.queue.entries import Queue


def all_entries(project):
    return Queue(project / ".mm4").entries(("queued", "claimed", "done", "superseded", "rejected", "merged"))


def drained(project, timeout=30):
    """The hook notes the commit and queues it in the background: wait for that."""
    state = project / ".mm4"
    wait_for(
        lambda: not (state / "commits.pending").exists() and not (state / "commits.draining").exists(),
        timeout,
        "the noted commits to be queued",
        every=0.02,
    )


def commit(project, message, *extra, wait=True):
    done = subprocess.run(["git", "commit", "-q", "-m", message, *extra], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if wait:
        drained(project)
    return done


@pytest.fixture
def hooked(repo):
    done = mm4(["install-hooks"], cwd=repo)
    assert done.returncode == 0, done.stderr
    return repo


def tagged(value):
    return notebook_json(code(f"# mm4: remote\nv = {value}"))


def test_commits_queue_what_they_changed(hooked):
    nb = hooked / "notebooks" / "a.ipynb"
    nb.write_text(tagged(1))
    write_notebook(hooked / "notebooks" / "plain.ipynb", code("x = 1"))
    write_notebook(hooked / "elsewhere" / "b.ipynb", code("# mm4: remote\nx = 1"))  # not a notebook folder
    git(hooked, "add", "-A")
    done = commit(hooked, "add notebooks")
    assert "queueing runs for the tagged notebooks of" in done.stderr and "the daemon is not running" in done.stderr
    (entry,) = all_entries(hooked)
    sha = git(hooked, "rev-parse", "HEAD")
    assert (entry.notebook, entry.trigger, entry.commit_sha, entry.content) == (
        "notebooks/a.ipynb",
        "commit",
        sha,
        nb.read_bytes(),
    )

    nb.write_text(tagged(2))
    commit(hooked, "change", "-a")
    # a commit of new content never cancels an older commit's run
    assert [e.content for e in Queue(hooked / ".mm4").entries()] == [tagged(1).encode(), tagged(2).encode()]

    commit(hooked, "amend", "--amend", "-a")  # amend of the same bytes: the same request, now at the amended commit
    waiting = Queue(hooked / ".mm4").entries()
    assert len(waiting) == 2 and waiting[1].commit_sha == git(hooked, "rev-parse", "HEAD")
    assert [t["trigger"] for t in waiting[1].triggers] == ["commit", "commit"]

    count = len(all_entries(hooked))
    git(hooked, "rm", "-q", "notebooks/a.ipynb")
    commit(hooked, "delete only")
    assert len(all_entries(hooked)) == count  # a deletion queues nothing


def test_root_commit_rename_and_merge(repo_root_only):
    project = repo_root_only
    (project / "notebooks" / "r.ipynb").write_text(tagged(0))
    git(project, "add", "-A")
    commit(project, "root")
    assert [e.notebook for e in all_entries(project)] == ["notebooks/r.ipynb"]
    git(project, "mv", "notebooks/r.ipynb", "notebooks/renamed.ipynb")
    commit(project, "rename")
    assert all_entries(project)[-1].notebook == "notebooks/renamed.ipynb"

    git(project, "checkout", "-q", "-b", "feature")
    (project / "notebooks" / "f.ipynb").write_text(tagged(5))
    git(project, "add", "-A")
    commit(project, "feature work")
    git(project, "checkout", "-q", "main")
    (project / "other.txt").write_text("main moves on")
    git(project, "add", "-A")
    commit(project, "main work")
    before = len(all_entries(project))
    done = subprocess.run(
        ["git", "merge", "-q", "--no-ff", "-m", "merge feature", "feature"], cwd=project, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    drained(project)
    new = all_entries(project)[before:]
    head = git(project, "rev-parse", "HEAD")
    assert [(e.notebook, e.commit_sha, e.state) for e in new] == [("notebooks/f.ipynb", head, "merged")]
    # the merge brought the very bytes the feature commit queued: that entry answers both, at the merge
    target = Queue(project / ".mm4").get(new[0].merged_into)
    assert target.state == "queued" and target.commit_sha == head and len(target.triggers) == 2


@pytest.fixture
def repo_root_only(project):
    git(project, "init", "-q", "-b", "main")
    (project / ".gitignore").write_text("results/\n.mm4/\n")
    assert mm4(["install-hooks"], cwd=project).returncode == 0
    return project


def test_a_rebase_of_five_commits_queues_once(hooked):
    nb = hooked / "notebooks" / "reb.ipynb"
    git(hooked, "checkout", "-q", "-b", "topic")
    for i in range(5):
        nb.write_text(tagged(i))
        git(hooked, "add", "-A")
        commit(hooked, f"step {i}")
    git(hooked, "checkout", "-q", "main")
    (hooked / "upstream.txt").write_text("upstream change")
    git(hooked, "add", "-A")
    commit(hooked, "upstream")
    git(hooked, "checkout", "-q", "topic")
    before = len(all_entries(hooked))
    done = subprocess.run(["git", "rebase", "-q", "main"], cwd=hooked, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    drained(hooked)
    new = all_entries(hooked)[before:]
    assert len(new) == 1, [(e.notebook, e.commit_sha) for e in new]
    # the rebased tip holds the bytes "step 4" queued: that entry runs them, at the rebased commit
    runs = Queue(hooked / ".mm4").get(new[0].merged_into) if new[0].state == "merged" else new[0]
    assert runs.commit_sha == git(hooked, "rev-parse", "HEAD") and runs.content == tagged(4).encode()


def test_chaining_reinstall_and_uninstall(repo):
    hooks = repo / ".git" / "hooks"
    mine = '#!/bin/sh\necho ran >> "$(git rev-parse --show-toplevel)/mine.txt"\n'
    (hooks / "post-commit").write_text(mine)
    (hooks / "post-commit").chmod(0o755)
    assert "kept your post-commit hook" in mm4(["install-hooks"], cwd=repo).stdout
    again = mm4(["install-hooks"], cwd=repo)
    assert again.returncode == 0 and "kept your" not in again.stdout  # it knows its own hook
    (repo / "notebooks" / "c.ipynb").write_text(tagged(1))
    git(repo, "add", "-A")
    commit(repo, "c")
    assert (repo / "mine.txt").read_text() == "ran\n"
    assert len(all_entries(repo)) == 1
    assert "restored your post-commit hook" in mm4(["uninstall-hooks"], cwd=repo).stdout
    assert (hooks / "post-commit").read_text() == mine and not (hooks / "post-rewrite").exists()
    assert not (hooks / "post-merge").exists()


def test_core_hooks_path_is_respected(repo):
    git(repo, "config", "core.hooksPath", ".githooks")
    done = mm4(["install-hooks"], cwd=repo)
    assert str(repo / ".githooks" / "post-commit") in done.stdout
    (repo / "notebooks" / "h.ipynb").write_text(tagged(1))
    git(repo, "add", "-A")
    commit(repo, "h")
    assert len(all_entries(repo)) == 1


def test_the_hook_never_fails_a_commit(hooked):
    (hooked / "mm4.toml").write_text("[run\nbroken")
    (hooked / "notebooks" / "x.ipynb").write_text(tagged(1))
    git(hooked, "add", "-A")
    done = commit(hooked, "with a broken config", wait=False)
    assert len(done.stderr.strip().splitlines()) == 1 and "mm4watch:" in done.stderr
    # nothing noted is lost: once the config is fixed, the next drain queues it
    (hooked / "mm4.toml").write_text('[run]\nexecutor = "local"\n')
    from mm4watch.core import config
    from mm4watch.triggers.hook import drain

    assert drain(config.load(hooked)) == ["notebooks/x.ipynb"]


def test_the_hook_path_stays_lean():
    probe = (
        "import sys; import mm4watch.triggers.hook, mm4watch.queue.entries, mm4watch.queue.active; "
        "print(sorted(m for m in ('docker','papermill','git','rich','nbformat','watchdog','psutil') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.usefixtures("kernel")
def test_a_commit_runs_the_committed_notebook_on_the_daemon(hooked):
    (hooked / "mm4.toml").write_text('[run]\nexecutor = "local"\n[daemon]\ndebounce = "30s"\nnotify = false\n')
    git(hooked, "add", "-A")
    commit(hooked, "config")
    nb = write_notebook(hooked / "notebooks" / "d.ipynb", code("# mm4: remote\nprint('as committed')"))
    assert mm4(["start"], cwd=hooked).returncode == 0
    try:
        git(hooked, "add", "-A")
        done = commit(hooked, "run me")
        sha = git(hooked, "rev-parse", "HEAD")
        write_notebook(nb, code("# mm4: remote\nprint('edited after the commit')"))  # the work tree moves on
        run_dir = first_run(hooked, lambda d: status_of(d) == "succeeded", what=done.stderr)
        record = load_record(run_dir)
        assert record["trigger"] == "commit"
        assert record["commit"] == {"sha": sha, "branch": "main", "dirty": False}
        assert "as committed" in (run_dir / "run.log").read_text()
        assert not (run_dir / "source.patch").exists()
    finally:
        mm4(["stop", "--now"], cwd=hooked)


@pytest.mark.usefixtures("kernel")
def test_rerun_rebuilds_the_exact_input(repo):
    nb = write_notebook(
        repo / "notebooks" / "e.ipynb",
        code("# mm4: remote\nv = 1"),
        code("w = 0", tags=["parameters"]),
        code("print('v', v, 'w', w)"),
    )
    git(repo, "add", "-A")
    commit(repo, "e")
    write_notebook(nb, code("# mm4: remote\nv = 2"), code("w = 0", tags=["parameters"]), code("print('v', v, 'w', w)"))
    first = mm4(["run", "notebooks/e.ipynb", "-p", "w=7"], cwd=repo)
    assert first.returncode == 0, first.stderr
    write_notebook(nb, code("# mm4: remote\nv = 3"))  # the work tree moves on again
    done = mm4(["rerun", "e"], cwd=repo)
    assert done.returncode == 0, done.stderr
    old, new = (load_record(d) for d in run_dirs(repo))
    assert new["rerun_of"] == old["id"]
    assert new["source"]["sha256"] == old["source"]["sha256"] and new["parameters"] == {"w": 7}
    assert new["commit"] == old["commit"] and new["commit"]["dirty"] is True
    assert "v 2 w 7" in (Path(done.stdout.strip()) / "run.log").read_text()


def test_pre_commit_framework_installs_and_runs_the_hooks(repo):
    import shutil

    shutil.copy(REPO / ".pre-commit-config.yaml", repo / ".pre-commit-config.yaml")
    shutil.copytree(REPO / "hooks", repo / "hooks")  # the local config runs them from the repository
    env = {**os.environ, "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-cache")}
    for hook_type in ("pre-commit", "post-commit", "post-rewrite"):
        subprocess.run(
            [sys.executable, "-m", "pre_commit", "install", "--hook-type", hook_type],
            cwd=repo,
            env=env,
            check=True,
            capture_output=True,
        )
    (repo / "notebooks" / "p.ipynb").write_text(tagged(1))
    git(repo, "add", "-A")
    done = subprocess.run(
        ["git", "commit", "-q", "-m", "via pre-commit"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    drained(repo)
    (entry,) = all_entries(repo)
    assert entry.trigger == "commit" and entry.notebook == "notebooks/p.ipynb"

    (repo / "notebooks" / "broken.ipynb").write_text('{"cells": [')
    git(repo, "add", "-A")
    blocked = subprocess.run(["git", "commit", "-q", "-m", "broken"], cwd=repo, env=env, capture_output=True, text=True)
    assert blocked.returncode != 0
    assert "not valid notebook JSON" in blocked.stdout + blocked.stderr


def test_check_refuses_outputs_when_asked(tmp_path, monkeypatch):
    from mm4watch.triggers.hook import check

    nb = json.loads(tagged(1))
    nb["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x"}]
    (tmp_path / "o.ipynb").write_text(json.dumps(nb))
    monkeypatch.chdir(tmp_path)
    assert check(["o.ipynb"], no_outputs=False) == 0
    assert check(["o.ipynb"], no_outputs=True) == 1


def test_the_repository_hooks_are_the_installed_ones():
    from mm4watch.triggers.hooks_install import HOOKS, repository_script

    for name in HOOKS:
        path = REPO / "hooks" / name
        assert path.read_text() == repository_script(name) and os.access(path, os.X_OK)
