import subprocess

from conftest import code, git, notebook_json

from mm4watch.core.git import provenance


def test_outside_git(tmp_path):
    nb = tmp_path / "nb.ipynb"
    nb.write_text(notebook_json(code("x = 1")))
    prov = provenance(nb, nb.read_bytes())
    assert prov.commit is None and prov.patch is None


def test_clean_committed_notebook(repo):
    nb = repo / "notebooks" / "nb.ipynb"
    nb.write_text(notebook_json(code("x = 1")))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "nb")
    prov = provenance(nb, nb.read_bytes())
    assert prov.commit == {"sha": git(repo, "rev-parse", "HEAD"), "branch": "main", "dirty": False}
    assert prov.patch is None


def test_edited_notebook_patch_rebuilds_the_input(repo, tmp_path):
    nb = repo / "notebooks" / "nb.ipynb"
    nb.write_text(notebook_json(code("x = 1")))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "nb")
    nb.write_text(notebook_json(code("x = 2"), code("print(x)")))
    prov = provenance(nb, nb.read_bytes())
    assert prov.commit["dirty"] is True and prov.patch
    # apply the patch to a clean checkout of that commit: the exact input comes back
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    git(clone, "checkout", "-q", prov.commit["sha"])
    subprocess.run(["git", "apply", "-"], cwd=clone, input=prov.patch.encode(), check=True)
    assert (clone / "notebooks" / "nb.ipynb").read_bytes() == nb.read_bytes()


def test_untracked_notebook_is_a_new_file_patch(repo, tmp_path):
    nb = repo / "notebooks" / "new.ipynb"
    nb.write_bytes(notebook_json(code("y = 3")).encode().rstrip(b"\n"))  # no final newline
    prov = provenance(nb, nb.read_bytes())
    assert prov.commit["dirty"] is True
    assert "new file mode" in prov.patch
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    subprocess.run(["git", "apply", "-"], cwd=clone, input=prov.patch.encode(), check=True)
    assert (clone / "notebooks" / "new.ipynb").read_bytes() == nb.read_bytes()


def test_other_tracked_changes_make_the_tree_dirty(repo):
    nb = repo / "notebooks" / "nb.ipynb"
    nb.write_text(notebook_json(code("x = 1")))
    (repo / "lib.py").write_text("A = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "nb")
    (repo / "lib.py").write_text("A = 2\n")
    prov = provenance(nb, nb.read_bytes())
    assert prov.commit["dirty"] is True and prov.patch is None


def test_repository_without_commits(project):
    git(project, "init", "-q", "-b", "trunk")
    nb = project / "notebooks" / "nb.ipynb"
    nb.write_text(notebook_json(code("x = 1")))
    prov = provenance(nb, nb.read_bytes())
    assert prov.commit == {"sha": None, "branch": "trunk", "dirty": True}


def test_detached_head(repo):
    git(repo, "checkout", "-q", "--detach")
    nb = repo / "notebooks" / "nb.ipynb"
    nb.write_text(notebook_json(code("x = 1")))
    assert provenance(nb, nb.read_bytes()).commit["branch"] is None


def test_a_results_folder_made_after_the_specs_does_not_break_git_add(repo, tmp_path):
    """The pathspecs are computed before another run may make ``results/`` (ignored by a `results/`
    rule): git refuses an exclusion that names an ignored folder, so none may name it."""
    from mm4watch.core.git import call, shipped_specs

    (repo / "lib.py").write_text("A = 2\n")
    specs = shipped_specs(repo, "", ("results", "data"))  # no results/ yet
    assert not any(s.endswith(")results") for s in specs) and ":(top,exclude,literal)data" in specs
    (repo / "results" / "r1").mkdir(parents=True)  # another run's folder, made meanwhile
    (repo / "results" / "r1" / "run.json").write_text("{}")
    index = tmp_path / "index"
    call(repo, "read-tree", "HEAD", index=index)
    call(repo, "add", "-A", "--", *specs, index=index)  # raised "paths are ignored ... results"
    staged = call(repo, "diff", "--cached", "--name-only", "HEAD", index=index).decode().split()
    assert staged == ["lib.py"]
