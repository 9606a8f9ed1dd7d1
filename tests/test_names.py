"""Any notebook name runs on every executor, and no part of a name is ever executed."""

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import code, git, load_record, mm4, mm4_each, on_mac, on_mini, run_dirs, wait_for, write_notebook
from hypothesis import given, settings
from hypothesis import strategies as st

from mm4watch.core.names import KEY_MAX, join, quote, run_key

# Names as Jupyter makes them, as collaborators push them, and as attackers would.
HOSTILE = [
    "Untitled 1",
    "EDA (copy)",
    "$(touch PWNED)",
    "`touch PWNED_TICK`; touch PWNED_SEMI",
    "Übung 1",
    'it\'s "quoted"',
    "-leading",
    "Case",
    "case",  # differs from the one above only by case
    "n" * 200,
    "sub dir/x",
]
CANARY = re.compile(r"PWNED")
DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


# -- the safe key ------------------------------------------------------------


@given(st.text(min_size=1, max_size=300))
@settings(max_examples=500, deadline=None)
def test_run_key_is_valid_for_docker_and_stable(name):
    key = run_key(name)
    assert DOCKER_NAME.match(key) and DOCKER_NAME.match(f"mm4-run-{key}")
    assert re.fullmatch(r"[a-z0-9-]+", key) and not key.startswith("-") and len(key) <= KEY_MAX
    assert run_key(name) == key


@given(st.lists(st.text(min_size=1, max_size=60), min_size=2, max_size=40, unique=True))
@settings(max_examples=200, deadline=None)
def test_run_keys_never_collide(names):
    assert len({run_key(n) for n in names}) == len(names)


def test_run_key_stays_readable():
    assert run_key("Untitled 1_20261129_101500").startswith("untitled-1-20261129-101500-")
    assert run_key("Übung 1_x").startswith("ubung-1-x-")
    assert run_key("Case") != run_key("case")


@given(st.text(max_size=80))
@settings(max_examples=200, deadline=None)
def test_quote_survives_a_real_shell(value):
    value = value.replace("\0", "")
    out = subprocess.run(["sh", "-c", f"printf %s {quote(value)}"], capture_output=True).stdout
    assert out == value.encode("utf-8", "surrogateescape")
    words = ["a b", value, "$(x)"]
    argv = subprocess.run(
        ["sh", "-c", f"for w in {join(words)}; do printf '%s\\0' \"$w\"; done"], capture_output=True
    ).stdout
    assert argv.split(b"\0")[:-1] == [w.encode("utf-8", "surrogateescape") for w in words]


# -- every executor, every way in ---------------------------------------------


def hostile_notebooks(project: Path) -> dict[str, Path]:
    """One tagged notebook per hostile name; each writes a file named after its own stem."""
    made = {}
    for name in HOSTILE:
        path = project / "notebooks" / f"{name}.ipynb"
        write_notebook(
            path,
            code(
                "# mm4: remote\nimport os, pathlib\n"
                f"stem = {Path(name).name!r}\n"
                "(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'out.txt').write_text(stem)\n"
                "print('ran', stem)"
            ),
        )
        made[name] = path
    return made


def status(run_dir: Path) -> str | None:
    """A run's status, None while its folder is new and its record not written yet."""
    try:
        return load_record(run_dir)["status"]
    except (OSError, ValueError):
        return None


def no_canary_here(*places: Path) -> None:
    for place in (*places, Path.home()):
        found = [p for p in place.rglob("*") if CANARY.search(p.name) and not p.name.endswith(".ipynb")]
        found = [p for p in found if "results" not in p.parts]  # result folders carry the name as written
        assert not found, f"a name was executed: {found}"


def no_canary_on_mini(on) -> None:
    out = on("find / -xdev -name 'PWNED*' -not -name '*.ipynb' 2>/dev/null | grep -v /results/ || true")
    assert out.strip() == "", f"a name was executed on the Mini: {out}"


def assert_all_came_home(project: Path, trigger: str | None = None) -> None:
    runs = {load_record(d)["notebook"]: d for d in run_dirs(project)}
    for name in HOSTILE:
        rel = f"notebooks/{name}.ipynb"
        assert rel in runs, f"no run of {rel}: {sorted(runs)}"
        run_dir = runs[rel]
        record = load_record(run_dir)
        assert record["status"] == "succeeded", (rel, record.get("error"), (run_dir / "run.log").read_text()[-2000:])
        assert run_dir.name.startswith(f"{Path(name).name}_"), run_dir.name  # named as the user wrote it
        assert record["key"] == run_key(record["id"])
        assert (run_dir / "out.txt").read_text() == Path(name).name
        if trigger:
            assert record["trigger"] == trigger


def _clean_canaries(*places: Path) -> None:
    for place in places:
        for p in place.glob("PWNED*"):
            p.unlink()


@pytest.mark.usefixtures("kernel")
def test_hostile_names_on_the_local_executor_and_the_cli(repo, tmp_path):
    project = repo
    hostile_notebooks(project)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "hostile names")
    runs = mm4_each([["run", f"notebooks/{name}.ipynb"] for name in HOSTILE], cwd=project)
    for name, done in zip(HOSTILE, runs, strict=True):
        assert done.returncode == 0, (name, done.stderr)
    assert_all_came_home(project)
    no_canary_here(project, tmp_path)

    history = json.loads(mm4(["history", "--json"], cwd=project).stdout)
    assert {r["notebook"] for r in history} == {f"notebooks/{n}.ipynb" for n in HOSTILE}
    asked = mm4_each([[what, "--", r["id"]] for r in history for what in ("show", "logs")], cwd=project, at_once=4)
    for record, shown, logs in zip(history, asked[0::2], asked[1::2], strict=True):
        assert shown.returncode == 0 and record["id"] in shown.stdout, shown.stderr
        assert logs.returncode == 0 and "ran " in logs.stdout, logs.stderr
    firsts = [
        next(r for r in history if r["notebook"] == f"notebooks/{name}.ipynb")
        for name in ("$(touch PWNED)", 'it\'s "quoted"', "sub dir/x", "Übung 1", "-leading")
    ]
    for first, again in zip(
        firsts, mm4_each([["rerun", "--", first["id"]] for first in firsts], cwd=project), strict=True
    ):
        assert again.returncode == 0, again.stderr
        assert any(load_record(d).get("rerun_of") == first["id"] for d in run_dirs(project))
    no_canary_here(project, tmp_path)


def run_every_name_remotely(project: Path, on, tmp_path: Path) -> None:
    """Every hostile name run remotely; ``on(command)`` runs a shell command on that machine as its root."""
    on("rm -f ~/PWNED* /PWNED* /tmp/PWNED*")
    hostile_notebooks(project)
    for name in HOSTILE:
        done = mm4(["run", f"notebooks/{name}.ipynb"], cwd=project, timeout=900)
        assert done.returncode == 0, (name, done.stderr)
    assert_all_came_home(project)
    no_canary_here(project, tmp_path)
    no_canary_on_mini(on)


@pytest.mark.usefixtures("kernel")
def test_hostile_names_on_the_docker_executor(mini_project, mini, tmp_path):
    run_every_name_remotely(mini_project, lambda command: on_mini(mini, command), tmp_path)
    for d in run_dirs(mini_project):
        assert load_record(d)["executor"]["type"] == "docker"
    # every run's container is gone (its own runs': other tests' runs may go on there meanwhile); a
    # run's key is in docker's alphabet, its id (a hostile name) is not for a shell
    keys = {load_record(d)["key"] for d in run_dirs(mini_project)}
    left = on_mini(mini, "docker ps -a --format '{{.Names}}'").split()
    assert [name for name in left if name.removeprefix("mm4-run-") in keys] == []


@pytest.mark.usefixtures("kernel")
def test_hostile_names_on_the_native_executor(tmp_path, mac):
    from test_native_executor import native_toml

    root = tmp_path / "n proj (2)"  # a project folder with a space too
    (root / "notebooks").mkdir(parents=True)
    (root / "requirements.txt").write_text("# nothing beyond papermill\n")
    (root / "mm4.toml").write_text(native_toml(mac))
    run_every_name_remotely(root, lambda command: on_mac(mac, command), tmp_path)
    assert {load_record(d)["executor"]["type"] for d in run_dirs(root)} == {"native"}


@pytest.mark.usefixtures("kernel")
def test_hostile_names_through_a_save_and_through_a_commit(repo, tmp_path):
    from test_daemon import jupyter_save

    (repo / "mm4.toml").write_text(  # three at once: the names meet each other in the daemon too
        '[run]\nexecutor = "here"\ntimeout = "2m"\n[executors.here]\ntype = "local"\nconcurrency = 3\n'
        '[daemon]\ndebounce = "0.5s"\nnotify = false\n'
    )
    assert mm4(["install-hooks"], cwd=repo).returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "config")
    made = hostile_notebooks(repo)  # written before the daemon starts: remembered, not run
    started = mm4(["start"], cwd=repo)
    assert started.returncode == 0, started.stderr
    try:
        for path in made.values():  # a save by the user: a new cell
            text = json.loads(path.read_text())
            text["cells"].append(
                {
                    "cell_type": "code",
                    "id": "saved",
                    "metadata": {},
                    "source": "saved = True",
                    "outputs": [],
                    "execution_count": None,
                }
            )
            jupyter_save(path, json.dumps(text))
        wait_for(
            lambda: len([d for d in run_dirs(repo) if status(d) == "succeeded"]) == len(HOSTILE),
            timeout=240,
            what="a save run of every hostile name",
        )
        assert_all_came_home(repo, trigger="save")
        saved = {d.name for d in run_dirs(repo)}

        # a commit of different content: a commit run of every name, as committed
        for path in made.values():
            text = json.loads(path.read_text())
            text["cells"][-1]["source"] = "committed = True"
            path.write_text(json.dumps(text))
        git(repo, "add", "-A")
        done = subprocess.run(["git", "commit", "-q", "-m", "hostile names"], cwd=repo, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

        sha = git(repo, "rev-parse", "HEAD")

        def commit_runs():
            fresh = {}
            for d in run_dirs(repo):
                if d.name in saved or status(d) != "succeeded":
                    continue
                record = load_record(d)
                if (record.get("commit") or {}).get("sha") == sha and not record["commit"]["dirty"]:
                    fresh[record["notebook"]] = d
            return fresh if len(fresh) == len(HOSTILE) else None

        fresh = wait_for(commit_runs, timeout=240, what="a run of every hostile name at the commit")
        assert set(fresh) == {f"notebooks/{n}.ipynb" for n in HOSTILE}
        for d in fresh.values():
            assert "commit" in [t["trigger"] for t in load_record(d)["triggers"]], load_record(d)
            assert (d / "out.txt").exists()
    finally:
        mm4(["stop", "--now"], cwd=repo)
    no_canary_here(repo, tmp_path)


def test_one_name_per_notebook_whichever_way_it_is_written_or_typed(repo):
    """A notebook stored in NFD (as a name copied from an older volume is): the watcher sees those
    bytes, git names it in NFC (on a Mac), a person types it in NFC or in another case. One name
    (as stored, in NFC) in the queue, the records, the run folders and the history."""
    import unicodedata

    from test_daemon import jupyter_save

    nfd, nfc = unicodedata.normalize("NFD", "Café"), unicodedata.normalize("NFC", "Café")
    assert nfd != nfc
    (repo / "mm4.toml").write_text(
        '[run]\nexecutor = "here"\ntimeout = "2m"\n[executors.here]\ntype = "local"\n'
        '[daemon]\ndebounce = "0.5s"\nnotify = false\n'
    )
    path = repo / "notebooks" / f"{nfd}.ipynb"
    write_notebook(path, code("# mm4: remote\nx = 1"))
    assert mm4(["install-hooks"], cwd=repo).returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "an NFD name")
    started = mm4(["start"], cwd=repo)
    assert started.returncode == 0, started.stderr
    try:
        text = json.loads(path.read_text())
        text["cells"].append(code("saved = True"))
        jupyter_save(path, json.dumps(text))  # the watcher sees the NFD bytes
        wait_for(lambda: len(run_dirs(repo)) == 1 and status(run_dirs(repo)[0]) == "succeeded", 120, "the save run")
        text["cells"][-1]["source"] = "committed = True"
        path.write_text(json.dumps(text))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "committed")  # the hook: git's name for it

        def committed():
            return any(
                status(d) == "succeeded" and "commit" in [t["trigger"] for t in load_record(d)["triggers"]]
                for d in run_dirs(repo)
            )

        wait_for(committed, 120, "a run the commit asked for")
    finally:
        assert mm4(["stop"], cwd=repo).returncode == 0
    for typed in (f"notebooks/{nfc}.ipynb", f"notebooks/{nfc.upper()}.IPYNB"):  # typed by a person
        done = mm4(["run", typed], cwd=repo)
        assert done.returncode == 0, done.stderr
    dirs = run_dirs(repo)
    assert len(dirs) >= 4 and all(d.name.startswith(f"{nfc}_") for d in dirs), [d.name for d in dirs]
    assert {load_record(d)["notebook"] for d in dirs} == {f"notebooks/{nfc}.ipynb"}
    triggers = {t["trigger"] for d in dirs for t in load_record(d)["triggers"]}
    assert {"save", "commit", "manual"} <= triggers, triggers
    history = json.loads(mm4(["history", "--json"], cwd=repo).stdout)
    assert {r["notebook"] for r in history} == {f"notebooks/{nfc}.ipynb"} and len(history) == len(dirs)
    for asked in (nfd, nfc.lower()):
        listed = json.loads(mm4(["history", "--json", "--notebook", asked], cwd=repo).stdout)
        assert len(listed) == len(dirs), (asked, listed)
    assert path.exists() and not (repo / "notebooks" / f"{nfc}.ipynb").exists()  # the user's file, untouched
