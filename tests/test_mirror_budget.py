"""Earlier results travel only when a run can use them, and the Mini's copy stays bounded (real rig)."""

import os
import shutil
from datetime import datetime

import pytest
from conftest import MAC_PART, code, container_project, git, load_record, mini_toml, mm4, run_dirs, write_notebook
from test_results_chain import native_project, newest, on_far_side
from test_store import make_run

from mm4watch.core import config
from mm4watch.remote import mirror

pytestmark = pytest.mark.usefixtures("kernel")

MB = 2**20
FAT = 50 * MB


@pytest.fixture(params=["docker", pytest.param("native", marks=MAC_PART)])
def far(request, tmp_path, mini, mac):
    """A project whose runs go to the docker fake Mini, or to the Mac-like one (native)."""
    if request.param == "docker":
        return container_project(tmp_path, mini_toml(mini)), "docker"
    return native_project(tmp_path, mac), "native"


def fat_run(results, stem, when, status="succeeded", **fields):
    """A finished run folder of ``stem`` holding 50 MB that does not compress."""
    run_dir = make_run(results, stem, when, status, **fields)
    (run_dir / "blob.bin").write_bytes(os.urandom(FAT))
    return run_dir


def copy_dir(project, kind):
    base = "mm4watch" if kind == "docker" else "/home/me/mm4watch"
    return mirror.remote_dir(config.load(project), base)


def folders_there(project, kind, request):
    """The whole run folders in the project's copy on the far side."""
    out = on_far_side(kind, request, f"ls -1 {copy_dir(project, kind)} 2>/dev/null || true")
    return sorted(out.split())


def bytes_there(project, kind, request):
    out = on_far_side(kind, request, f"du -sk {copy_dir(project, kind)} | cut -f1")
    return int(out.strip()) * 1024


def test_the_default_sends_the_newest_of_each_notebook_and_says_what_it_did_not(far, request):
    project, kind = far
    results = project / "results"
    old = fat_run(results, "A_make", datetime(2026, 11, 1, 10), parameters={"n": 1})
    good = fat_run(results, "A_make", datetime(2026, 11, 2, 10), parameters={"n": 2})
    bad = fat_run(results, "A_make", datetime(2026, 11, 3, 10), "failed", parameters={"n": 3})
    write_notebook(project / "notebooks" / "B_plain.ipynb", code("# mm4: remote\nx = 1"))
    done = mm4(["run", "notebooks/B_plain.ipynb"], cwd=project, timeout=900)
    assert done.returncode == 0, done.stderr
    b = newest(project, "B_plain")
    log = (b / "run.log").read_text()
    # the newest successful run (latest_run) and the newest ended one (sorted(glob)[-1]); not the oldest
    assert "sent 2 new run folder(s) (104.9 MB)" in log, log
    assert folders_there(project, kind, request) == sorted([good.name, bad.name])
    assert load_record(b)["inputs"] == {"mode": "latest", "count": 2, "newest": bad.name}

    # a run that asks for the one left at home is told which folder and what sends it
    write_notebook(
        project / "notebooks" / "C_asks.ipynb",
        code("# mm4: remote\nfrom mm4watch import latest_run\nlatest_run('A_make', where={'n': 1})"),
    )
    done = mm4(["run", "notebooks/C_asks.ipynb"], cwd=project, timeout=600)
    assert done.returncode == 1
    error = load_record(newest(project, "C_asks"))["error"]
    assert error["ename"] == "RunNotSent", error
    assert f"is {old.name}, which was not sent to this machine" in error["evalue"]
    assert "needs=A_make" in error["evalue"] and 'results_mirror = "all"' in error["evalue"]
    # what was sent is still found: latest_run() answers with the newest successful run
    write_notebook(
        project / "notebooks" / "D_loads.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib\nfrom mm4watch import latest_run\n"
            "(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'seen.txt').write_text(latest_run('A_make').name)"
        ),
    )
    done = mm4(["run", "notebooks/D_loads.ipynb"], cwd=project, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (newest(project, "D_loads") / "seen.txt").read_text() == good.name


def test_a_bound_keeps_the_copy_small_and_the_needed_folder_there(request, tmp_path, mac):
    project = native_project(tmp_path, mac)
    kind = "native"
    (project / "mm4.toml").write_text(
        (project / "mm4.toml").read_text().replace("[run]\n", '[run]\nmirror_max = "120m"\n')
    )
    budget = 120 * MB
    write_notebook(
        project / "notebooks" / "B_needs.ipynb",
        code(
            "# mm4: remote needs=A_make\nimport os, pathlib\nfrom mm4watch import latest_run\n"
            "found = latest_run('A_make')\n"
            "(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'seen.txt').write_text("
            "f\"{found.name} {(found / 'blob.bin').stat().st_size}\")"
        ),
    )
    for day in range(1, 6):
        needed = fat_run(project / "results", "A_make", datetime(2026, 11, day, 10))
        done = mm4(["run", "notebooks/B_needs.ipynb"], cwd=project, timeout=900)
        assert done.returncode == 0, (day, done.stderr)
        b = newest(project, "B_needs")
        assert (b / "seen.txt").read_text() == f"{needed.name} {FAT}"
        there = folders_there(project, kind, request)
        assert needed.name in there, (day, there)
        assert bytes_there(project, kind, request) <= budget, (day, there)
        log = (b / "run.log").read_text()
        assert "of at most 125.8 MB" in log, log
        if day >= 3:  # two 50 MB folders fill it: an older one goes before each new one comes
            assert "used least lately" in log, log
    assert len([name for name in folders_there(project, kind, request) if name.startswith("A_make_")]) == 2


def test_a_folder_larger_than_the_bound_is_an_error_before_anything_is_sent(request, tmp_path, mac):
    project = native_project(tmp_path, mac)
    (project / "mm4.toml").write_text(
        (project / "mm4.toml").read_text().replace("[run]\n", '[run]\nmirror_max = "20m"\n')
    )
    big = fat_run(project / "results", "A_make", datetime(2026, 11, 1, 10))
    write_notebook(project / "notebooks" / "B_needs.ipynb", code("# mm4: remote needs=A_make\nx = 1"))
    done = mm4(["run", "notebooks/B_needs.ipynb"], cwd=project, timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{big} is 52.4 MB, more than the copy of earlier results may hold" in done.stderr
    assert "[run] mirror_max: 21.0 MB" in done.stderr and "raise [run] mirror_max" in done.stderr
    assert [d.name for d in run_dirs(project)] == [big.name]  # no run folder made
    assert folders_there(project, "native", request) == []  # nothing sent


def test_doctor_shows_the_copies_and_gc_trims_and_removes_old_paths(request, tmp_path, mac):
    project = native_project(tmp_path, mac)
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "first")
    write_notebook(project / "notebooks" / "B_plain.ipynb", code("# mm4: remote\nx = 1"))
    fat_run(project / "results", "A_make", datetime(2026, 11, 1, 10))
    assert mm4(["run", "notebooks/B_plain.ipynb"], cwd=project, timeout=900).returncode == 0
    old_key = config.load(project).project_key
    moved = tmp_path / "renamed"
    shutil.move(project, moved)
    assert mm4(["run", "notebooks/B_plain.ipynb"], cwd=moved, timeout=900).returncode == 0
    new_key = config.load(moved).project_key
    assert new_key != old_key

    shown = mm4(["doctor"], cwd=moved, timeout=300)
    assert "ok    earlier results: this project's copy on" in shown.stdout, shown.stdout
    assert f"copy {old_key}/results" in shown.stdout and f"this project at {project}" in shown.stdout
    assert "`mm4watch gc` removes it" in shown.stdout

    (moved / "mm4.toml").write_text((moved / "mm4.toml").read_text().replace("[run]\n", '[run]\nmirror_max = "10m"\n'))
    done = mm4(["gc"], cwd=moved, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"removed mm4watch/{old_key} on" in done.stdout, done.stdout
    assert "folder(s) used least lately; the copy holds" in done.stdout and "of at most 10.5 MB" in done.stdout
    assert not [name for name in folders_there(moved, "native", request) if name.startswith("A_make_")]  # 50 MB
    assert bytes_there(moved, "native", request) <= 10 * MB
    listing = on_far_side("native", request, "ls -1 /home/me/mm4watch").split()
    assert old_key not in listing and new_key in listing


def test_what_each_setting_chooses(tmp_path):
    """Which folders a run would get, on this machine alone: the newest successful and newest ended
    run of each notebook by default, plus what needs= names; "needs" and "all" as before."""
    root = tmp_path / "p"
    results = root / "results"
    a1 = make_run(results, "A", datetime(2026, 11, 1))
    a2 = make_run(results, "A", datetime(2026, 11, 2))
    a3 = make_run(results, "A", datetime(2026, 11, 3), "failed")
    c1 = make_run(results, "C", datetime(2026, 11, 4))

    def chosen(setting, needs=()):
        cfg = config.parse(f'[run]\nresults_mirror = "{setting}"\n', root=root)
        return mirror.choose(cfg, needs)

    latest = chosen("latest")
    assert latest.runs == (a2.name, a3.name, c1.name) and latest.needed == ()
    assert set(latest.index) == {a1.name, a2.name, a3.name, c1.name}
    assert latest.index[a1.name]["status"] == "succeeded" and latest.index[a1.name]["notebook"] == "notebooks/A.ipynb"
    with_needs = chosen("latest", ("C",))
    assert with_needs.runs == latest.runs and with_needs.needed == (c1.name,)
    assert chosen("needs", ("A",)).runs == (a2.name,)
    assert chosen("all").runs == (a1.name, a2.name, a3.name, c1.name)
    assert chosen("all", ("A",)).runs == (a2.name,)  # needs= limits "all", as it always did
    assert chosen("none").runs == ()


def test_a_bound_is_a_size_with_its_line(tmp_path):
    from mm4watch.core.errors import ConfigError

    assert config.parse('[run]\nmirror_max = "1.5g"\n', root=tmp_path).run.mirror_max == int(1.5 * 2**30)
    with pytest.raises(ConfigError, match=r'mm4.toml:2: run.mirror_max \'lots\' is not a size; write e.g. "20g"'):
        config.parse('[run]\nmirror_max = "lots"\n', root=tmp_path)


def test_an_explicit_bound_refuses_an_oversize_needed_folder_before_anything(tmp_path):
    root = tmp_path / "p"
    big = make_run(root / "results", "A", datetime(2026, 11, 1))
    (big / "blob.bin").write_bytes(b"x" * (3 * MB))
    cfg = config.parse('[run]\nmirror_max = "2m"\n', root=root)
    with pytest.raises(mirror.MirrorTooBig, match=r"is 3\.1 MB, more than .*\[run\] mirror_max: 2\.1 MB"):
        mirror.choose(cfg, ("A",))
    assert mirror.choose(cfg, ()).runs == (big.name,)  # merely visible: left unsent at the push if it does not fit


def test_the_helpers_say_which_folder_was_not_sent(tmp_path, monkeypatch):
    """As a remote run sees its copy: some folders there, the index naming them all."""
    import json

    from mm4watch import latest_run, runs
    from mm4watch.core.errors import RunNotSent

    home = tmp_path / "home" / "results"
    sent_here = tmp_path / "there" / "results"
    old = make_run(home, "A", datetime(2026, 11, 1), parameters={"n": 1})
    new = make_run(home, "A", datetime(2026, 11, 2), parameters={"n": 2})
    shutil.copytree(new, sent_here / new.name)
    cfg = config.parse("", root=tmp_path / "home")
    index = {"runs": mirror.choose(cfg, ()).index}
    (sent_here / mirror.INDEX).write_text(json.dumps(index))
    monkeypatch.setenv("MM4_RESULTS_DIR", str(sent_here))
    monkeypatch.setenv("MM4_PROJECT_DIR", str(tmp_path / "there"))
    monkeypatch.setenv("MM4_RUN_ID", "B_20261203_100000")
    assert latest_run("A") == sent_here / new.name
    assert latest_run("A", where={"n": 2}) == sent_here / new.name
    with pytest.raises(RunNotSent, match=rf"is {old.name}, which was not sent to this machine: .*needs=A"):
        latest_run("A", where={"n": 1})
    with pytest.raises(RunNotSent, match=rf"1 run\(s\) of 'A' were not sent to this machine \({old.name}\)"):
        runs("A")
    assert [r.id for r in runs("A", where={"n": 2})] == [new.name]  # what it asks for is all here
    with pytest.raises(LookupError):  # RunNotSent is a RunNotFound, a LookupError: old code catching it still works
        latest_run("A", where={"n": 1})


def test_what_goes_is_the_least_recently_used_never_a_pinned_or_needed_one():
    there = mirror.There(
        absolute="/x",
        free=0,
        by_use=["new", "mid", "pinned", "old"],  # most recently used first, as `ls -t` lists them
        sizes={"new": 40, "mid": 40, "pinned": 40, "old": 40},
        pinned={"pinned"},
    )
    assert mirror.to_evict(there, set(), 0, 160) == []
    assert mirror.to_evict(there, set(), 40, 160) == ["old"]
    assert mirror.to_evict(there, set(), 80, 160) == ["old", "mid"]  # never the pinned one, though older
    assert mirror.to_evict(there, {"mid"}, 80, 160) == ["old", "new"]
    assert mirror.to_evict(there, {"mid", "new"}, 80, 160) == ["old"]  # what stays may exceed: needed wins
