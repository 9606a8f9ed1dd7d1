import json

import pytest
from conftest import REPO, mm4

from mm4watch.core import config
from mm4watch.core.tags import read_tag


def test_init_sets_up_an_empty_project(tmp_path):
    done = mm4(["init"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    cfg = config.load(tmp_path)
    assert cfg.file == tmp_path.resolve() / "mm4.toml" and cfg.executor().type == "local"
    text = (tmp_path / "mm4.toml").read_text()
    assert '# [executors.mini]\n# type = "docker"' in text  # the Mini is shown, commented out
    path = tmp_path / "notebooks" / "00_test_remote.ipynb"
    assert read_tag(path.read_bytes(), path.name)[1] is not None
    assert (tmp_path / ".gitignore").read_text().splitlines()[-3:] == ["results/", ".mm4/", ".ipynb_checkpoints/"]
    dockerfile = (tmp_path / "Dockerfile").read_text()
    assert "RUN --mount=type=cache,target=/root/.cache/uv" in dockerfile and "papermill>=2.6" in dockerfile
    assert "ARG MM4_BASE_REQUIREMENTS" in dockerfile  # the base layer mm4watch passes
    assert (tmp_path / "requirements.txt").read_text().startswith("#")  # the Dockerfile's COPY finds it


def test_init_ignores_the_results_folder_the_config_names(tmp_path):
    (tmp_path / "mm4.toml").write_text('[project]\nresults = "out/runs"\nnotebooks = "nbs"\n')
    done = mm4(["init"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".gitignore").read_text().splitlines()[-3:] == ["out/runs/", ".mm4/", ".ipynb_checkpoints/"]
    assert (
        tmp_path / "nbs" / "00_test_remote.ipynb"
    ).exists() and "mm4watch run nbs/00_test_remote.ipynb" in done.stdout


def test_init_never_overwrites(tmp_path):
    (tmp_path / "mm4.toml").write_text('[run]\nexecutor = "local"\n')
    (tmp_path / ".gitignore").write_text("*.pyc\nresults/")  # no final newline
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "00_test_remote.ipynb").write_text("mine")
    (tmp_path / "Dockerfile").write_text("FROM mine\n")
    done = mm4(["init"], cwd=tmp_path)
    assert done.returncode == 0
    assert (tmp_path / "mm4.toml").read_text() == '[run]\nexecutor = "local"\n'
    assert (tmp_path / "notebooks" / "00_test_remote.ipynb").read_text() == "mine"
    assert (tmp_path / "Dockerfile").read_text() == "FROM mine\n" and "kept     " + str(
        tmp_path / "Dockerfile"
    ) in done.stdout
    assert (tmp_path / ".gitignore").read_text() == "*.pyc\nresults/\n# mm4watch\n.mm4/\n.ipynb_checkpoints/\n"
    again = mm4(["init"], cwd=tmp_path)
    assert again.returncode == 0 and "already ignores" in again.stdout
    assert (tmp_path / ".gitignore").read_text().count(".mm4/") == 1


def test_template_and_repository_examples_agree():
    assert (REPO / "mm4watch" / "templates" / "mm4.toml").read_text() == (REPO / "mm4.toml").read_text()
    assert (REPO / "mm4watch" / "templates" / "Dockerfile").read_text() == (REPO / "Dockerfile").read_text()
    assert json.loads((REPO / "mm4watch" / "templates" / "sample.ipynb").read_text()) == json.loads(
        (REPO / "notebooks" / "00_test_remote.ipynb").read_text()
    )
    assert read_tag((REPO / "notebooks" / "00_test_remote.ipynb").read_bytes(), "00")[1] is not None
    assert read_tag((REPO / "notebooks" / "01_read_results.ipynb").read_bytes(), "01")[1] is None


def test_service_unit_for_this_machine(tmp_path):
    import platform

    (tmp_path / "mm4.toml").write_text("[run]\n")
    shown = mm4(["service", "show"], cwd=tmp_path)
    assert shown.returncode == 0 and '"start" "--foreground"' in shown.stdout
    done = mm4(["service", "install"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = done.stdout.split("wrote ", 1)[1].splitlines()[0]
    from pathlib import Path

    unit = Path(written)
    assert unit.read_text() == shown.stdout
    assert str(unit).startswith(str(Path.home()))  # the test's own HOME
    if platform.system() == "Linux":
        assert unit.parent.name == "user" and f"WorkingDirectory={tmp_path.resolve()}" in unit.read_text()
    assert mm4(["service", "uninstall"], cwd=tmp_path).returncode == 0 and not unit.exists()


def test_launchd_agent_for_a_mac(tmp_path):
    """The agent `service install` writes on a Mac, read back as launchd reads it (plistlib)."""
    import os
    import plistlib
    import re
    import sys
    from pathlib import Path

    (tmp_path / "mm4.toml").write_text("[run]\n")
    env = {"PATH": "/opt/homebrew/bin:/usr/local/bin:" + os.environ["PATH"]}
    shown = mm4(["service", "show", "--for", "macos"], cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    agent = plistlib.loads(shown.stdout.encode())
    root = tmp_path.resolve()
    label = agent["Label"]
    assert re.fullmatch(r"com\.mm4watch\.[a-z0-9_.-]+-[0-9a-f]{8}", label), label
    assert agent["ProgramArguments"] == [sys.executable, "-m", "mm4watch", "start", "--foreground"]
    assert agent["WorkingDirectory"] == str(root)
    assert agent["RunAtLoad"] is True and agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["ProcessType"] == "Interactive"  # not throttled as a background job
    assert agent["EnvironmentVariables"] == {"PATH": env["PATH"]}  # the installing shell's: Homebrew's tools
    assert agent["StandardOutPath"] == agent["StandardErrorPath"] == str(root / ".mm4" / "launchd.log")
    assert not agent["StandardErrorPath"].endswith("daemon.log")  # the daemon rotates that one itself

    done = mm4(["service", "install", "--for", "macos"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    plist = Path.home() / "Library" / "LaunchAgents" / f"{label}.plist"
    assert plistlib.loads(plist.read_bytes()) == agent
    assert f"launchctl bootstrap gui/{os.getuid()} {plist}" in done.stdout  # not the deprecated load
    gone = mm4(["service", "uninstall", "--for", "macos"], cwd=tmp_path, env=env)
    assert gone.returncode == 0 and not plist.exists()


LAUNCHCTL = REPO / "tests" / "rig" / "launchctl"  # a stand-in for macOS's: records calls, unloads as launchd does


def _with_launchctl(tmp_path, **extra):
    import os
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shutil.copy(LAUNCHCTL, bin_dir / "launchctl")
    state = tmp_path / "launchd"
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "MM4_LAUNCHCTL_STATE": str(state), **extra}, state


@pytest.mark.parametrize("print_lies", [False, True])
def test_a_reinstall_waits_until_launchd_has_let_go_of_the_old_agent(tmp_path, print_lies):
    """`bootout` returns while the old job is still unloading; a bootstrap then answers "5: Input/output
    error". The install waits until `launchctl print` no longer finds it, and tries a refused bootstrap
    again (print may say gone a moment before bootstrap agrees)."""
    import os

    (tmp_path / "mm4.toml").write_text("[run]\n")
    env, state = _with_launchctl(tmp_path, **({"MM4_LAUNCHCTL_PRINT_LIES": "1"} if print_lies else {}))
    first = mm4(["service", "install", "--for", "macos"], cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    again = mm4(["service", "install", "--for", "macos"], cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "the daemon runs now and at every login" in again.stdout and "(the earlier one)" in again.stdout
    calls = [line.split(" ", 1) for line in (state / "calls.log").read_text().splitlines()]
    verbs = [c[1].split()[0] for c in calls]
    out = verbs.index("bootout")
    assert verbs[-1] == "bootstrap" and verbs[out + 1] == "print"  # asked after the bootout, loaded at the end
    last_bootstrap = float(calls[-1][0])
    assert last_bootstrap - float(calls[out][0]) >= 1.0  # not before the old job was gone (it took 1 s)
    (job,) = [p for p in state.iterdir() if p.name.startswith(f"gui_{os.getuid()}_com.mm4watch.")]
    assert job.read_text() == "loaded"


def test_no_gui_login_says_what_to_do(tmp_path):
    (tmp_path / "mm4.toml").write_text("[run]\n")
    env, _ = _with_launchctl(tmp_path, MM4_LAUNCHCTL_NO_GUI="1")
    done = mm4(["service", "install", "--for", "macos"], cwd=tmp_path, env=env)
    assert done.returncode != 0
    assert "125: Domain does not support specified action" in done.stderr
    assert "Nobody is logged in" in done.stderr and "mm4watch service install --at-boot" in done.stderr
    assert "Traceback" not in done.stderr


def test_at_boot_is_a_launch_daemon_run_as_the_user(tmp_path):
    """A LaunchDaemon with UserName: from boot, no login, exempt from Local Network Privacy. Without
    launchctl here, install writes it in the project's state folder and prints what an administrator runs."""
    import getpass
    import os
    import plistlib
    import sys
    from pathlib import Path

    (tmp_path / "mm4.toml").write_text("[run]\n")
    env = {"PATH": "/opt/homebrew/bin:" + os.environ["PATH"]}
    shown = mm4(["service", "show", "--for", "macos", "--at-boot"], cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    job = plistlib.loads(shown.stdout.encode())
    assert job["UserName"] == getpass.getuser()
    assert job["EnvironmentVariables"] == {"PATH": env["PATH"], "HOME": str(Path.home())}
    assert job["ProgramArguments"] == [sys.executable, "-m", "mm4watch", "start", "--foreground"]
    assert job["ProcessType"] == "Interactive" and job["RunAtLoad"] is True
    assert "LimitLoadToSessionType" not in job  # not an agent's: it runs with nobody logged in

    done = mm4(["service", "install", "--for", "macos", "--at-boot"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    label = job["Label"]
    staged = tmp_path.resolve() / ".mm4" / f"{label}.plist"
    assert plistlib.loads(staged.read_bytes()) == job
    sudo = "" if os.geteuid() == 0 else "sudo "
    assert f"{sudo}install -m 644 -o root -g wheel {staged} /Library/LaunchDaemons/{label}.plist" in done.stdout
    assert f"{sudo}launchctl bootstrap system /Library/LaunchDaemons/{label}.plist" in done.stdout
    assert (
        not Path("/Library/LaunchDaemons").exists() or not (Path("/Library/LaunchDaemons") / f"{label}.plist").exists()
    )
    linux = mm4(["service", "install", "--for", "linux", "--at-boot"], cwd=tmp_path, env=env)
    assert linux.returncode != 0 and "--at-boot is for macOS" in linux.stderr
