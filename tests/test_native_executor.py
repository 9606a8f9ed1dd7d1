"""The native executor against a Mac-like Mini over SSH: a fresh Mac's defaults.

User ``me`` (uid 501, not root: modes bind), zsh as the login shell, the stock
``python3`` 3.9, sshd's minimal PATH, no docker (tests/rig/mac.sh)."""

import json
import os
import time

import psutil
import pytest
from conftest import (
    as_mac_user,
    code,
    first_run,
    load_record,
    mac_ssh_options,
    mm4,
    mm4_background,
    most_at_once,
    on_mac,
    run_dirs,
    sweep_through_daemon,
    wait_for,
    write_notebook,
)

from mm4watch.core import config
from mm4watch.core.names import run_key

pytestmark = pytest.mark.usefixtures("kernel")


def native_toml(mac, extra="", timeout="5m"):
    options = ", ".join(json.dumps(o) for o in mac_ssh_options(mac))
    return (
        f'[run]\nexecutor = "gpu"\ntimeout = "{timeout}"\n\n[executors.gpu]\ntype = "native"\n'
        f'host = "{mac["MAC_USER"]}@{mac["MAC_HOST"]}"\npython = "python3"\n'
        f"ssh_options = [{options}]\n{extra}"
    )


@pytest.fixture
def native_project(tmp_path, mac):
    root = tmp_path / "nproj"
    (root / "notebooks").mkdir(parents=True)
    (root / "requirements.txt").write_text("# nothing beyond papermill\n")
    (root / "mm4.toml").write_text(native_toml(mac))
    (root / "helper.py").write_text("GREETING = 'from the code folder'\n")
    return root


def processes_of(mac, run_id):
    """Processes on the Mini whose environment names the run (the runner, its kernel, anything they started)."""
    out = on_mac(mac, f"grep -l 'MM4_RUN_ID={run_id}' /proc/[0-9]*/environ 2>/dev/null || true", user="me")
    return [line for line in out.split() if line]


def caffeinated(mac):
    """caffeinate's calls on the Mini: {pid: (its arguments, whether it let go)}."""
    held = {}
    for line in on_mac(mac, "cat /var/log/caffeinate.log").splitlines():
        word, pid, *args = line.split()
        if word == "start":
            held[pid] = (args, False)
        elif pid in held:
            held[pid] = (held[pid][0], True)
    return held


def test_success_failure_and_a_rebuilt_environment(native_project, mac):
    write_notebook(
        native_project / "notebooks" / "ok.ipynb",
        code("# mm4: remote\nimport os, sys, pathlib\nsys.path.insert(0, '..')\nimport helper"),
        code("n = 1", tags=["parameters"]),
        code(
            "(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'out.txt').write_text(f'{n} {helper.GREETING} {os.getcwd()}')"
        ),
    )
    done = mm4(["run", "notebooks/ok.ipynb", "-p", "n=4"], cwd=native_project, timeout=900)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(native_project)
    record = load_record(run_dir)
    text = (run_dir / "out.txt").read_text()
    assert text.startswith("4 from the code folder ") and text.endswith(f"/runs/{run_key(run_dir.name)}/code/notebooks")
    ex = record["executor"]
    stock = as_mac_user(mac, "python3 -c 'import platform; print(platform.python_version())'").stdout.strip()
    assert stock.startswith("3.9.") and ex["python"] == stock  # the Mini's own python3, as a fresh Mac has it
    assert ex["type"] == "native" and ex["platform"] and len(ex["env_hash"]) == 16
    assert ex["mps"] is None  # torch is not installed there
    # what the kernel ran with: the Mini's venv, its packages listed
    env_txt = (run_dir / "environment.txt").read_text().splitlines()
    assert env_txt[0].startswith(f"# python {stock} (cpython, ") and "/venvs/" in env_txt[0], env_txt[:3]
    assert any(line.startswith("papermill==") for line in env_txt) and not any("torch" in ln for ln in env_txt)
    assert record["environment"]["python"] == stock
    assert record["environment"]["packages"] == sum("==" in line for line in env_txt)
    key = config.load(native_project).project_key  # the project's one name on the Mini
    assert key.startswith("nproj-") and len(key) == len("nproj-") + 8
    assert run_key(run_dir.name) not in on_mac(mac, f"ls ~/mm4watch/{key}/runs").split()  # its folder there is gone
    # the Mini was kept awake while the runner lived, and let go after
    assert "kept awake while the run lasts" in (run_dir / "run.log").read_text()
    assert "is empty here" not in (run_dir / "run.log").read_text()  # notebooks/ holds only notebooks, not sent as code
    wait_for(lambda: caffeinated(mac) and all(ended for _, ended in caffeinated(mac).values()), what="caffeinate ends")
    assert any(args[:2] == ["-i", "-w"] for args, _ in caffeinated(mac).values())
    first_env = ex["env_hash"]

    write_notebook(
        native_project / "notebooks" / "bad.ipynb", code("# mm4: remote\nx = 1"), code("raise KeyError('nope')")
    )
    done = mm4(["run", "notebooks/bad.ipynb"], cwd=native_project)
    assert done.returncode == 1
    bad = load_record(next(d for d in run_dirs(native_project) if d.name.startswith("bad_")))
    assert bad["status"] == "failed" and bad["error"]["ename"] == "KeyError" and bad["error"]["cell"] == 1
    assert bad["executor"]["env_hash"] == first_env
    assert "reused" in (native_project / "results" / bad["id"] / "build.log").read_text()

    # a requirements.txt no earlier test run had: a new environment is built, by uv, the package importable
    (native_project / "requirements.txt").write_text(f"# {time.time()!r}\ntabulate\n")
    write_notebook(
        native_project / "notebooks" / "tabulate.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib, tabulate\n(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'tabulate.txt').write_text(tabulate.__name__)"
        ),
    )
    done = mm4(["run", "notebooks/tabulate.ipynb"], cwd=native_project, timeout=900)
    assert done.returncode == 0, done.stderr
    newest = max(run_dirs(native_project), key=lambda d: load_record(d)["queued_at"])
    assert load_record(newest)["executor"]["env_hash"] != first_env
    assert (newest / "tabulate.txt").read_text() == "tabulate"
    log = (newest / "build.log").read_text()
    assert "building the environment" in log and " with uv " in log and "mm4watch/uv-cache, shared by" in log, log
    assert " + tabulate==" in log  # uv's own lines: what it installed
    # diff names the package installed between the two runs, and its version as the kernel had it
    tabulate_version = next(
        ln for ln in (newest / "environment.txt").read_text().splitlines() if ln.startswith("tabulate==")
    )
    said = mm4(["diff", run_dir.name, newest.name], cwd=native_project)
    assert said.returncode == 0, said.stderr
    assert f"  + {tabulate_version}  (added)" in said.stdout, said.stdout
    # an environment of this project was there: the packages came from the Mini's uv cache, tabulate looked up
    assert (
        "from the uv cache on this Mini without asking the index: what the environment before had, then tabulate from the index"
        in log
    ), log


def test_timeout_kills_the_process_tree(native_project, mac):
    write_notebook(
        native_project / "notebooks" / "slow.ipynb",
        code(
            "# mm4: remote timeout=25s\nimport os, pathlib, time\n(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'early.txt').write_text('x')"
        ),
        code("time.sleep(600)"),
    )
    done = mm4(["run", "notebooks/slow.ipynb"], cwd=native_project, timeout=900)
    assert done.returncode == 1
    (run_dir,) = run_dirs(native_project)
    record = load_record(run_dir)
    assert record["status"] == "timeout" and record["error"]["cell"] == 1
    assert (run_dir / "early.txt").read_text() == "x" and (run_dir / "executed.ipynb").exists()
    assert processes_of(mac, run_dir.name) == []  # no orphaned kernel on the Mini
    wait_for(lambda: all(ended for _, ended in caffeinated(mac).values()), what="caffeinate ends")


def test_a_dropped_connection_does_not_stop_the_run(native_project, mac):
    write_notebook(
        native_project / "notebooks" / "drop.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib, time\ntime.sleep(6)\n(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'done.txt').write_text('yes')"
        ),
    )
    child = mm4_background(["run", "notebooks/drop.ipynb"], native_project)
    first_run(native_project, lambda d: processes_of(mac, d.name), timeout=600, what="the run on the Mini")
    # drop every SSH connection to this Mini from here (the shared master included); only this Mini's:
    # tests of other machines may run beside this one
    for proc in psutil.process_iter(["name", "cmdline"]):
        argv = proc.info["cmdline"] or []
        if proc.info["name"] == "ssh" and "-M" in argv and mac["MAC_PORT"] in argv:
            proc.kill()
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    (run_dir,) = run_dirs(native_project)
    assert (run_dir / "done.txt").read_text() == "yes"


def test_two_runs_at_once_keep_their_own_folders(native_project, mac):
    for name in ("one", "two"):
        write_notebook(
            native_project / "notebooks" / f"{name}.ipynb",
            code(
                f"# mm4: remote\nimport os, pathlib, time\ntime.sleep(2)\n"
                f"(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'who.txt').write_text('{name}')"
            ),
        )
    mm4(["run", "notebooks/one.ipynb"], cwd=native_project, timeout=900)  # the environment exists afterwards
    for d in run_dirs(native_project):
        import shutil

        shutil.rmtree(d)
    children = [mm4_background(["run", f"notebooks/{name}.ipynb"], native_project) for name in ("one", "two")]
    for child in children:
        child.communicate(timeout=300)
        assert child.returncode == 0
    results = {load_record(d)["notebook"]: (d / "who.txt").read_text() for d in run_dirs(native_project)}
    assert results == {"notebooks/one.ipynb": "one", "notebooks/two.ipynb": "two"}


# what an interpreter older than the far side's minimum answers (canned text: the stand-in has no 3.8)
OLD_PYTHON = """#!/bin/sh
case "$2" in
  *version_info*) echo "3 8 3.8.18 /home/me/old/python3.8 macOS-14.5-arm64-arm-64bit" ;;
  *) echo "3.8.18 (default, Jun  1 2024, 10:00:00) [Clang 15.0.0]" ;;
esac
"""


def test_doctor_checks_the_native_executor(native_project, mac):
    done = mm4(["doctor"], cwd=native_project)
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("ssh", "python", "venv", "awake", "free disk"):
        assert f"ok    {check}" in done.stdout
    assert "ok    python: 3.9." in done.stdout and "(/usr/bin/python3, " in done.stdout  # what a run will use
    # 3.9 runs notebooks, but current torch, numpy and scikit-learn need 3.10: said, and named when asked for
    assert "warn  python: 3.9: torch 2.9 and later, current numpy, pandas, scipy and scikit-learn need" in done.stdout
    (native_project / "requirements.txt").write_text("torch>=2\nscikit_learn  # models\n")
    heavy = mm4(["doctor"], cwd=native_project)
    assert heavy.returncode == 0 and "pip installs old releases of torch, scikit-learn" in heavy.stdout, heavy.stdout
    assert "uv python install 3.12" in heavy.stdout

    # an interpreter below the minimum: doctor says FAIL with where to get a newer one, and a run
    # fails at once saying the same (doctor agrees with what a run does)
    on_mac(
        mac, f"mkdir -p ~/old && cat > ~/old/python3.8 <<'EOF'\n{OLD_PYTHON}EOF\nchmod +x ~/old/python3.8", user="me"
    )
    (native_project / "mm4.toml").write_text(native_toml(mac).replace('"python3"', '"/home/me/old/python3.8"'))
    old = mm4(["doctor"], cwd=native_project)
    assert old.returncode == 1 and "FAIL  python: /home/me/old/python3.8 is Python 3.8.18" in old.stdout, old.stdout
    assert "runs need 3.9 or newer" in old.stdout and "brew install python@3.12" in old.stdout
    write_notebook(native_project / "notebooks" / "o.ipynb", code("# mm4: remote\nx = 1"))
    ran = mm4(["run", "notebooks/o.ipynb"], cwd=native_project)
    assert ran.returncode == 1 and "is Python 3.8.18; runs need 3.9 or newer" in ran.stderr, ran.stderr
    (native_project / "mm4.toml").write_text(native_toml(mac).replace('python = "python3"', 'python = "python9.9"'))
    bad = mm4(["doctor"], cwd=native_project)  # none at all
    assert bad.returncode == 1 and "FAIL  python" in bad.stdout and "xcode-select --install" in bad.stdout


def test_data_is_mirrored_and_read_only(native_project, mac):
    mirror = f"/home/me/mm4-native-data-{os.getpid()}"
    (native_project / "mm4.toml").write_text(native_toml(mac, extra=f'data = "{mirror}"\nsync_data = true\n'))
    (native_project / "data").mkdir()
    (native_project / "data" / "t.csv").write_text("a\n1\n")
    write_notebook(
        native_project / "notebooks" / "d.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])\n"
            "text = pathlib.Path('../data/t.csv').read_text()\n"
            "try:\n    pathlib.Path('../data/t.csv').write_text('changed')\n    wrote = 'yes'\n"
            "except OSError as e:\n    wrote = type(e).__name__\n"
            "(out / 'seen.txt').write_text(text + wrote)"
        ),
    )
    # the native path has no mount: the mirror is made read-only by its permissions, which bind
    # for the Mini's user (not root): the write fails as a user would meet it
    done = mm4(["run", "notebooks/d.ipynb"], cwd=native_project, timeout=900)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(native_project)
    assert (run_dir / "seen.txt").read_text() == "a\n1\nPermissionError"
    assert on_mac(mac, f"stat -c %A {mirror}/t.csv").strip() == "-r--r--r--"
    assert on_mac(mac, f"cat {mirror}/t.csv") == "a\n1\n"
    assert (native_project / "data" / "t.csv").read_text() == "a\n1\n"
    on_mac(mac, f"chmod -R u+w {mirror}; rm -rf {mirror}")


def test_cancel_stops_the_run_and_keeps_what_it_wrote(native_project, mac):
    write_notebook(
        native_project / "notebooks" / "c.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib, time\n(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'first.txt').write_text('1')"
        ),
        code("time.sleep(600)"),
    )
    child = mm4_background(["run", "notebooks/c.ipynb"], native_project)
    first_run(
        native_project,
        lambda d: "Executing Cell 2" in (d / "run.log").read_text(),
        timeout=600,
        what="the second cell to start",
    )
    (run_dir,) = run_dirs(native_project)
    cancel = mm4(["cancel", run_dir.name], cwd=native_project)
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout, cancel.stderr
    child.communicate(timeout=120)
    assert load_record(run_dir)["status"] == "cancelled"
    assert (run_dir / "first.txt").read_text() == "1"
    assert processes_of(mac, run_dir.name) == []


def test_remote_commands_run_under_sh_whatever_the_login_shell(mac):
    from mm4watch.remote import ssh

    target = ssh.Target(f"{mac['MAC_USER']}@{mac['MAC_HOST']}", None, tuple(mac_ssh_options(mac)))
    # zsh, the Mac's login shell, does not word-split $var: sent as is, this prints 1
    assert as_mac_user(mac, "echo $SHELL; x='a b c'; set -- $x; echo $#").stdout.split() == ["/bin/zsh", "1"]
    assert ssh.run(target, "x='a b c'; set -- $x; echo $#").stdout.split() == [b"3"]
    assert ssh.run(target, "ls -d nothing-here-* 2>/dev/null; echo $?").stdout.split() == [b"2"]  # no zsh 'no matches'


def test_processes_starting_at_once_share_one_connection(mac, tmp_path):
    """Runs the daemon starts at once, on one Mini: one starts the shared ssh connection, the others
    find it; no second master is left behind (one that finds the socket taken runs on, unshared)."""
    import subprocess
    import sys

    from mm4watch.remote import ssh

    target = ssh.Target(f"{mac['MAC_USER']}@{mac['MAC_HOST']}", None, tuple(mac_ssh_options(mac)))
    control = ssh._control_path(target)

    def masters():
        return [
            p
            for p in psutil.process_iter(["cmdline"])
            if "-M" in (p.info["cmdline"] or []) and str(control) in p.info["cmdline"]
        ]

    for master in masters():  # none at the start: the first to come starts it
        master.kill()
    control.unlink(missing_ok=True)
    start = time.time() + 2
    script = (
        "import sys, time\n"
        "from mm4watch.remote import ssh\n"
        f"target = ssh.Target({target.destination!r}, None, {target.options!r})\n"
        f"time.sleep(max(0, {start} - time.time()))\n"
        "print(ssh.run(ssh.shared(target), 'echo ok').stdout.decode().strip())\n"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
        )
        for _ in range(6)
    ]
    outcomes = [(w.wait(timeout=120), *w.communicate()) for w in workers]
    assert [code for code, _, _ in outcomes] == [0] * 6, outcomes
    assert all(out.strip() == "ok" for _, out, _ in outcomes)
    masters = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "-M" in (p.info["cmdline"] or []) and str(control) in p.info["cmdline"]
    ]
    assert len(masters) == 1, [m.info["cmdline"] for m in masters]
    # it serves every process of this user, for minutes: it holds none's folder open
    assert masters[0].cwd() == str(control.parent)


def test_mac_droppings_change_no_code_sync_and_come_home_as_no_output(native_project, mac):
    write_notebook(
        native_project / "notebooks" / "m.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])\n"
            "(out / 'plot.txt').write_text('p')\n(out / '._plot.txt').write_text('apple double')\n"
            "(out / 'sub').mkdir()\n(out / 'sub' / '.DS_Store').write_text('finder')"
        ),
    )
    assert mm4(["run", "notebooks/m.ipynb"], cwd=native_project, timeout=900).returncode == 0
    # Finder opens the project and its notebooks folder
    for folder in (native_project, native_project / "notebooks"):
        (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (folder / "._helper.py").write_bytes(b"\0\5\26\7")
    done = mm4(["run", "notebooks/m.ipynb"], cwd=native_project, timeout=900)
    assert done.returncode == 0, done.stderr
    key = config.load(native_project).project_key
    code_dir = on_mac(mac, f"find ~/mm4watch/{key}/code -name '.DS_Store' -o -name '._*'")
    assert code_dir.strip() == ""  # never synced
    first, second = run_dirs(native_project)
    for run_dir in (first, second):
        outputs = [o["path"] for o in load_record(run_dir)["outputs"]]
        assert outputs == ["plot.txt"] and not (run_dir / "._plot.txt").exists()
        assert not (run_dir / "sub" / ".DS_Store").exists()
    assert "reused" in (second / "build.log").read_text()


def test_one_uv_cache_serves_every_project_on_the_mini(tmp_path, mac):
    """Two projects, one new package each time: the second finds every wheel in the Mini's uv cache."""
    marker = f"{time.time()!r}"
    logs = []
    for name in ("first", "second"):
        root = tmp_path / name
        (root / "notebooks").mkdir(parents=True)
        (root / "mm4.toml").write_text(native_toml(mac))
        (root / "requirements.txt").write_text(f"# {name} {marker}\ntabulate\n")
        write_notebook(root / "notebooks" / "t.ipynb", code("# mm4: remote\nimport tabulate\nprint(tabulate.__name__)"))
        done = mm4(["run", "notebooks/t.ipynb"], cwd=root, timeout=900)
        assert done.returncode == 0, done.stderr
        (run_dir,) = run_dirs(root)
        assert load_record(run_dir)["status"] == "succeeded"
        logs.append((run_dir / "build.log").read_text())
    assert all(" with uv " in log and " + tabulate==" in log for log in logs), logs
    # the second project's environment downloaded nothing: uv prepared no package, it linked from the cache
    assert "Prepared" not in logs[1], logs[1]
    cache = on_mac(mac, "ls ~/mm4watch/uv-cache", user="me").split()
    assert cache, "the Mini's one uv cache"
    # gc prunes it, and empties it past uv_cache_max (the environments keep working: hard links)
    done = mm4(["gc"], cwd=tmp_path / "second")
    assert done.returncode == 0 and "uv cache on me@127.0.0.1: " in done.stdout and "after pruning" in done.stdout
    (tmp_path / "second" / "mm4.toml").write_text(native_toml(mac, extra='uv_cache_max = "1k"\n'))
    done = mm4(["gc"], cwd=tmp_path / "second")
    assert "then emptied, being past the bound," in done.stdout, done.stdout
    assert "(at most 0 MB: uv_cache_max)" in done.stdout
    done = mm4(["run", "notebooks/t.ipynb"], cwd=tmp_path / "second", timeout=900)
    assert done.returncode == 0, done.stderr  # its environment, reused, still imports tabulate


def test_what_the_uv_cache_lacks_is_resolved_on_the_index(native_project, mac):
    """A Mini whose uv cache has lost what the project's earlier environment had (emptied): the
    cache-first resolution gives way to the index, and says so."""
    workdir = f"mm4watch-fresh-{int(time.time())}"
    try:
        (native_project / "mm4.toml").write_text(native_toml(mac, extra=f'workdir = "{workdir}"\n'))
        write_notebook(native_project / "notebooks" / "p.ipynb", code("# mm4: remote\nimport six\nprint(six.__name__)"))
        (native_project / "requirements.txt").write_text("six\n")
        first, second = [], []
        for requirements, logs in (("six\n", first), ("six\ntabulate==0.9.0\n", second)):
            if logs is second:  # what the first environment had is no longer in the cache there
                on_mac(mac, f"env UV_CACHE_DIR=$HOME/{workdir}/uv-cache ~/{workdir}/tools/uv cache clean -q", user="me")
            (native_project / "requirements.txt").write_text(requirements)
            done = mm4(["run", "notebooks/p.ipynb"], cwd=native_project, timeout=900)
            assert done.returncode == 0, done.stderr
            newest = max(run_dirs(native_project), key=lambda d: load_record(d)["queued_at"])
            logs.append((newest / "build.log").read_text())
        assert "from the uv cache" not in first[0] and " + six==" in first[0]  # the project's first: the index
        log = second[0]
        assert "not everything is in the uv cache: resolving on the index (uv said:" in log, log
        assert " + tabulate==0.9.0" in log, log
    finally:  # the copy of earlier results there is read-only
        on_mac(mac, f"chmod -R u+w ~/{workdir} && rm -rf ~/{workdir}", user="me")


def test_without_uv_pip_builds_the_environment_and_says_why(native_project, mac):
    # uv cannot be installed there: its tool folder is a file (as a failed download leaves nothing usable)
    workdir = f"mm4watch-nouv-{int(time.time())}"
    on_mac(mac, f"mkdir -p ~/{workdir} && touch ~/{workdir}/tools", user="me")
    try:
        (native_project / "mm4.toml").write_text(native_toml(mac, extra=f'workdir = "{workdir}"\n'))
        write_notebook(native_project / "notebooks" / "p.ipynb", code("# mm4: remote\nx = 1"))
        done = mm4(["run", "notebooks/p.ipynb"], cwd=native_project, timeout=900)
        assert done.returncode == 0, done.stderr
        (run_dir,) = run_dirs(native_project)
        log = (run_dir / "build.log").read_text()
        assert " with pip (uv could not be installed there by python3 -m pip" in log, log
    finally:
        on_mac(mac, f"rm -rf ~/{workdir}", user="me")


def test_requirement_lines_kept_and_added_against_the_earlier_file():
    from mm4watch.executors.native_env import requirement_lines

    assert requirement_lines(b"numpy\nsix  # new\n", "numpy\n# a comment\n") == (["numpy"], ["six"])
    assert requirement_lines(b"numpy\n", "numpy\nsix\n") == (["numpy"], [])  # a removal needs nothing new
    assert requirement_lines(b"pandas>=3\n", "pandas\n") == ([], ["pandas>=3"])  # a changed line is new
    assert requirement_lines(b"six\n", None) is None  # no earlier environment: the index decides
    for special in (b"-e .\n", b"--index-url https://x/simple\nsix\n", b"pkg @ https://x/p.whl\n", b"./wheels/a.whl\n"):
        assert requirement_lines(special, "six\n") is None, special


def test_rerun_with_the_same_environment_after_its_venv_was_pruned(native_project, mac):
    """A run's venv pruned (keep_environments = 1, requirements changed since): rerun
    --same-environment builds one from the run's environment.txt, and the kernel has its versions."""
    from support import git

    (native_project / "mm4.toml").write_text(native_toml(mac, extra="keep_environments = 1\n"))
    (native_project / "requirements.txt").write_text(f"# {time.time()!r}\ntabulate==0.8.10\n")
    write_notebook(
        native_project / "notebooks" / "v.ipynb",
        code("# mm4: remote\nimport os, pathlib, tabulate\n"
             "(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'v.txt').write_text(tabulate.__version__)"),
    )  # fmt: skip
    git(native_project, "init", "-q")
    for step in ("first", "second"):
        if step == "second":
            (native_project / "requirements.txt").write_text(f"# {time.time()!r}\ntabulate==0.9.0\n")
        git(native_project, "add", "-A")
        git(native_project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", step)
        done = mm4(["run", "notebooks/v.ipynb"], cwd=native_project, timeout=900)
        assert done.returncode == 0, done.stderr
    first, second = sorted(run_dirs(native_project), key=lambda d: load_record(d)["queued_at"])
    assert (first / "v.txt").read_text() == "0.8.10" and (second / "v.txt").read_text() == "0.9.0"
    key = config.load(native_project).project_key
    venvs = on_mac(mac, f"ls ~/mm4watch/{key}/venvs").split()
    assert venvs == [load_record(second)["executor"]["env_hash"]]  # the first run's venv is gone

    done = mm4(["rerun", "--same-environment", first.name], cwd=native_project, timeout=900)
    assert done.returncode == 0, done.stderr
    third = max(run_dirs(native_project), key=lambda d: load_record(d)["queued_at"])
    assert (third / "v.txt").read_text() == "0.8.10"  # the first run's version, not requirements.txt's
    assert "(--same-environment)" in (third / "run.log").read_text()
    said = mm4(["diff", first.name, third.name], cwd=native_project).stdout
    assert "packages: same packages" in said, said
    assert "+ tabulate" not in said and "~ tabulate" not in said


def test_a_sweep_on_the_mini_with_curves(native_project, mac):
    """A 2x2 sweep through the daemon on the Mac-like Mini, two at once (concurrency = 2) and never
    more; each run's curve of 5 steps comes home, in show --json and in the report."""
    import re

    from support import browser

    (native_project / "mm4.toml").write_text(
        native_toml(mac, extra="concurrency = 2\n") + '\n[daemon]\ndebounce = "0.5s"\nnotify = false\n'
    )
    write_notebook(
        native_project / "notebooks" / "sw.ipynb",
        code("a = 0\nb = 0", tags=["parameters"]),
        code("# mm4: remote\nimport json, os, pathlib, time\nfrom mm4watch import log_metrics\nt0 = time.time()\n"
             "for step in range(5):\n    log_metrics(step=step, loss=a * b / (step + 1))\ntime.sleep(3)\n"
             "(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'span.json').write_text(json.dumps([t0, time.time()]))"),
    )  # fmt: skip
    records = sweep_through_daemon(native_project, ["notebooks/sw.ipynb", "-p", "a=1,2", "-p", "b=3,4"], 4, timeout=600)
    dirs = run_dirs(native_project)
    sweep = records[0]["sweep"]["id"]
    assert {r["sweep"]["id"] for r in records} == {sweep} and sorted(r["sweep"]["index"] for r in records) == [
        0,
        1,
        2,
        3,
    ]
    spans = [json.loads((d / "span.json").read_text()) for d in dirs]
    assert most_at_once(spans) <= 2, spans  # never more than capacity
    for record in records:
        assert (
            record["curves"] == {"loss": 5}
            and (native_project / "results" / record["id"] / "environment.txt").is_file()
        )
        shown = json.loads(mm4(["show", "--json", record["id"]], cwd=native_project).stdout)
        a, b = record["parameters"]["a"], record["parameters"]["b"]
        assert shown["steps"]["loss"] == [[s, a * b / (s + 1)] for s in range(5)]
    assert mm4(["report"], cwd=native_project).returncode == 0
    dom = browser("--dump-dom", (native_project / "results" / "index.html").as_uri())
    assert f"loss by step, sweep {sweep}</figcaption>" in dom
    assert len(re.findall(r'<polyline class="curve" data-run="sw_', dom)) == 4
