"""Switching branches is not a save: files git writes queue no save runs (real daemon, real git)."""

import subprocess

import pytest
from conftest import code, decided, decisions, git, load_record, mm4, notebook_json, run_dirs, wait_for, write_notebook
from test_daemon import jupyter_save

from mm4watch.triggers.watcher import GitWindows

pytestmark = pytest.mark.usefixtures("kernel")

NOTEBOOKS = ("a", "b", "c")


def tagged(value):
    return notebook_json(code(f"# mm4: remote\nv = {value!r}"))


def runs(project):
    out = []
    for d in run_dirs(project):
        try:
            out.append(load_record(d))
        except (OSError, ValueError):
            out.append({"id": d.name, "status": None, "trigger": None, "notebook": None})
    return out


def settled(project, count, since, notebooks, decision="git"):
    """The daemon decided ``decision`` about each of ``notebooks`` (in what it recorded after its first
    ``since`` decisions), there are ``count`` runs, and each has ended: a negative check that waits on
    the daemon's own decision, never on a guessed time."""
    found = decided(project, [f"notebooks/{n}.ipynb" for n in notebooks], since)
    allowed = {decision} if isinstance(decision, str) else set(decision)
    assert set(found.values()) <= allowed, found
    assert len(run_dirs(project)) == count, [(r["notebook"], r["trigger"]) for r in runs(project)]
    wait_for(lambda: all(r["status"] not in (None, "queued", "running") for r in runs(project)), 60, "runs to end")


def logged(project, line, times):
    path = project / ".mm4" / "daemon.log"
    wait_for(lambda: path.read_text().count(line) >= times, 30, f"{line!r} logged {times} time(s)")


@pytest.fixture(params=["daemon alone", "with hooks"])
def branched(request, repo):
    """Three tagged notebooks that differ between main and feature; the daemon up."""
    (repo / "mm4.toml").write_text('[run]\nexecutor = "local"\n[daemon]\ndebounce = "0.5s"\nnotify = false\n')
    for name in NOTEBOOKS:
        (repo / "notebooks" / f"{name}.ipynb").write_text(tagged(f"{name} on main"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "main")
    git(repo, "switch", "-q", "-c", "feature")
    for name in NOTEBOOKS:
        (repo / "notebooks" / f"{name}.ipynb").write_text(tagged(f"{name} on feature"))
    git(repo, "commit", "-q", "-am", "feature")
    git(repo, "switch", "-q", "main")
    if request.param == "with hooks":
        assert mm4(["install-hooks"], cwd=repo).returncode == 0
    started = mm4(["start"], cwd=repo)
    assert started.returncode == 0, started.stderr
    yield repo, request.param == "with hooks"
    mm4(["stop", "--now"], cwd=repo)


def test_switching_back_and_forth_runs_nothing_and_says_so(branched):
    project, _ = branched
    said = "3 notebooks changed by git checkout: not runs"
    for round in range(2):
        for branch in ("feature", "main"):
            mark = len(decisions(project))
            git(project, "switch", "-q", branch)
            settled(project, 0, mark, NOTEBOOKS)
        logged(project, said, round + 1)  # each switch seen by itself: said once a round at least
    mark = len(decisions(project))
    git(project, "switch", "-q", "feature")  # and quick switches, seen as one
    git(project, "switch", "-q", "main")
    git(project, "switch", "-q", "feature")
    settled(project, 0, mark, NOTEBOOKS)
    shown = mm4(["status"], cwd=project).stdout
    assert said in shown, shown


def test_an_edit_right_after_a_checkout_runs_once(branched):
    project, _ = branched
    mark = len(decisions(project))
    git(project, "switch", "-q", "feature")
    settled(project, 0, mark, NOTEBOOKS)
    nb = project / "notebooks" / "a.ipynb"
    mark = len(decisions(project))
    jupyter_save(nb, tagged("edited on feature"))  # right after git's writes: the user's own
    wait_for(lambda: len(run_dirs(project)) == 1, 20, "the edit's run")
    settled(project, 1, mark, ["a"], decision="queued")
    (record,) = runs(project)
    assert (record["notebook"], record["trigger"], record["status"]) == ("notebooks/a.ipynb", "save", "succeeded")
    # an edit that puts back content that ran before is an edit too
    mark = len(decisions(project))
    jupyter_save(nb, tagged("a on main"))
    wait_for(lambda: len(run_dirs(project)) == 2, 20, "the second edit's run")
    settled(project, 2, mark, ["a"], decision="queued")
    mark = len(decisions(project))
    git(project, "checkout", "-q", "--", "notebooks/a.ipynb")  # git restore: not a save
    settled(project, 2, mark, ["a"])


def test_reset_and_stash_run_nothing_but_the_edit(branched):
    project, _ = branched
    nb = project / "notebooks" / "b.ipynb"
    mark = len(decisions(project))
    jupyter_save(nb, tagged("a user's edit"))
    wait_for(lambda: len(run_dirs(project)) == 1, 20, "the edit's run")
    settled(project, 1, mark, ["b"], decision="queued")
    for operation in (["stash", "-q"], ["stash", "pop", "-q"], ["reset", "-q", "--hard"]):
        mark = len(decisions(project))
        git(project, *operation)
        settled(project, 1, mark, ["b"])
    assert runs(project)[0]["trigger"] == "save"


def test_pull_and_rebase_run_what_the_commit_rules_say(branched, tmp_path):
    project, hooked = branched
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(project), str(other)], check=True)
    (other / "notebooks" / "c.ipynb").write_text(tagged("c from the other clone"))
    git(other, "commit", "-q", "-am", "upstream change")
    mark = len(decisions(project))
    git(project, "pull", "-q", "--ff-only", str(other), "main")
    expected = 1 if hooked else 0  # post-merge queues the notebook the pulled commit changed
    if expected:
        wait_for(lambda: len(run_dirs(project)) == expected, 30, "the pulled commit's run")
    settled(project, expected, mark, ["c"])
    if hooked:
        (record,) = runs(project)
        assert record["trigger"] == "commit" and record["notebook"] == "notebooks/c.ipynb"

    mark = len(decisions(project))
    git(project, "switch", "-q", "-c", "topic")
    (project / "notebooks" / "a.ipynb").write_text(tagged("a on topic"))
    git(project, "commit", "-q", "-am", "topic work")
    git(project, "switch", "-q", "main")
    (project / "notes.txt").write_text("main moves on\n")
    git(project, "add", "notes.txt")
    git(project, "commit", "-q", "-m", "main work")
    # the topic work and the switch: a commit run each with hooks (topic), none without
    settled_count = expected + (1 if hooked else 0)
    if hooked:
        wait_for(lambda: len(run_dirs(project)) >= settled_count, 30, "the topic commit's run")
    # the write, the commit and the switch back within one debounce: the daemon sees main's bytes,
    # which it saw last (unchanged), or git's write
    settled(project, settled_count, mark, ["a"], decision=("git", "unchanged"))
    count = len(run_dirs(project))
    mark = len(decisions(project))
    done = subprocess.run(["git", "rebase", "-q", "main", "topic"], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # post-rewrite (hooks) queues the rebased notebook once; it holds bytes that ran: it joins that run
    found = decided(project, ["notebooks/a.ipynb"], mark)
    assert found == {"notebooks/a.ipynb": "git"}, found
    wait_for(lambda: all(r["status"] not in (None, "queued", "running") for r in runs(project)), 60, "runs to end")
    assert len(run_dirs(project)) <= count + (1 if hooked else 0)
    assert all(r["trigger"] != "save" for r in runs(project))


def test_git_windows_cover_only_what_git_wrote():
    w = GitWindows()
    w.opened("index.lock", 10.0)
    assert w.covers(10.2, 10.2)
    w.closed("index.lock", 10.4)
    assert w.covers(10.3, 10.3) and w.covers(10.8, 10.8)
    assert not w.covers(11.5, 11.5) and not w.covers(9.0, 9.0)
    w.opened("index.lock", 1000.0)  # a lock a crashed git left behind stops counting
    assert not w.covers(1400.0, 1400.0)


def test_while_the_daemon_was_stopped(branched):
    project, _ = branched
    assert mm4(["stop"], cwd=project).returncode == 0
    git(project, "switch", "-q", "feature")  # git's writes while away: not runs
    mark = len(decisions(project))
    assert mm4(["start"], cwd=project).returncode == 0
    settled(project, 0, mark, NOTEBOOKS)
    logged(project, "changed by git while the daemon was stopped", 1)
    assert mm4(["stop"], cwd=project).returncode == 0
    write_notebook(project / "notebooks" / "a.ipynb", code("# mm4: remote\nv = 'edited while away'"))
    write_notebook(project / "notebooks" / "new.ipynb", code("# mm4: remote\nv = 'made while away'"))
    mark = len(decisions(project))
    assert mm4(["start"], cwd=project).returncode == 0
    wait_for(lambda: len(run_dirs(project)) == 2, 30, "the two edits' runs")
    settled(project, 2, mark, ["a", "new"], decision="queued")  # and both runs have ended
    assert sorted(r["notebook"] for r in runs(project)) == ["notebooks/a.ipynb", "notebooks/new.ipynb"]
    assert {r["trigger"] for r in runs(project)} == {"save"}
