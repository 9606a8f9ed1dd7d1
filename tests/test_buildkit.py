"""Run images built with BuildKit by the Mini's own docker CLI, and the classic builder when it
cannot be used (against the fake Mini, a real engine 20.10 reached only over ssh)."""

import re
import uuid

import pytest
from conftest import REPO, code, load_record, mini_toml, mm4, on_mini, run_dirs, write_notebook

pytestmark = pytest.mark.slow

TEMPLATE = (REPO / "mm4watch" / "templates" / "Dockerfile").read_text().replace("@project@", "mm4-tests")


def _run(project, notebook="notebooks/dep.ipynb"):
    done = mm4(["run", notebook], cwd=project, timeout=900)
    run_dir = run_dirs(project)[-1]
    return done, run_dir, (run_dir / "build.log").read_text()


def test_a_dependency_change_reuses_the_cache_mount(mini_project, mini):
    """The Dockerfile `mm4watch init` writes: adding a package installs that package only, into the
    project's environment kept on the Mini (nothing else downloaded), the uv layer stays cached, the
    run imports the new package."""
    (mini_project / "Dockerfile").write_text(TEMPLATE)
    # requirements no earlier build had: this build's RUN runs and brings the environment kept on
    # the Mini (shared with earlier runs of this test) back to papermill alone
    (mini_project / "requirements.txt").write_text(f"# nothing beyond papermill {uuid.uuid4().hex}\n")
    write_notebook(
        mini_project / "notebooks" / "dep.ipynb",
        code("# mm4: remote\nimport os, pathlib, importlib.util\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])"),
        code("(out / 'six.txt').write_text(str(importlib.util.find_spec('six') is not None))"),
    )
    done, first, log = _run(mini_project)
    assert done.returncode == 0, done.stderr + log[-2000:]
    assert "with BuildKit (DOCKER_BUILDKIT=1, docker CLI 20.10" in log and "at /usr/bin/docker" in log
    assert (first / "six.txt").read_text() == "False"
    assert load_record(first)["executor"]["builder"] == "buildkit"

    # a comment no earlier build had: BuildKit would otherwise find this very step in its cache
    (mini_project / "requirements.txt").write_text(f"six  # {uuid.uuid4().hex}\n")
    done, second, log = _run(mini_project)
    assert done.returncode == 0, done.stderr + log[-2000:]
    assert (second / "six.txt").read_text() == "True"
    assert re.search(r'RUN pip install --no-cache-dir "uv>=0\.5"\n(#\d+ sha256:\w+\n)?#\d+ CACHED', log), log[:3000]
    # the project's environment on the Mini (a cache mount) brought to the new requirements: six only
    assert re.search(r"Installed 1 package in", log) and " + six==" in log, log
    prepared = re.search(r"Prepared (\d+) packages?", log)
    assert prepared is None or int(prepared.group(1)) <= 1, log  # downloaded: six at most

    gc = mm4(["gc"], cwd=mini_project)
    assert gc.returncode == 0, gc.stderr
    assert "BuildKit cache on root@127.0.0.1:2222 trimmed to 21475 MB (build_cache_max)" in gc.stdout, gc.stdout


def test_a_dockerfile_without_cache_mounts_builds_with_buildkit_too(mini_project, mini):
    write_notebook(mini_project / "notebooks" / "dep.ipynb", code("# mm4: remote\nx = 1"))
    done, run_dir, log = _run(mini_project)
    assert done.returncode == 0, done.stderr + log
    assert "with BuildKit" in log and "RUN pip install --no-cache-dir" in log
    image = load_record(run_dir)["executor"]["image"]
    labels = on_mini(mini, f"docker image inspect -f '{{{{json .Config.Labels}}}}' {image}")
    assert '"mm4watch.context"' in labels and '"mm4watch.project"' in labels  # gc finds it by them


def test_no_buildkit_there_the_classic_builder_builds_and_says_why(mini_project, mini):
    (mini_project / "mm4.toml").write_text(mini_toml(mini, extra='docker_cli = "/opt/none/docker"\n'))
    write_notebook(mini_project / "notebooks" / "dep.ipynb", code("# mm4: remote\nx = 1"))
    done, run_dir, log = _run(mini_project)
    assert done.returncode == 0, done.stderr + log
    assert (
        "with the classic builder (4 files, 10240 bytes of context): docker_cli = '/opt/none/docker' is not an "
        "executable file on root@127.0.0.1:2222"
    ) in log
    assert "Step 1/" in log  # the classic builder's own lines
    assert load_record(run_dir)["executor"]["builder"] == "classic"


def test_a_cache_mount_without_buildkit_fails_saying_why(mini_project, mini):
    (mini_project / "mm4.toml").write_text(mini_toml(mini, extra='builder = "classic"\n'))
    (mini_project / "Dockerfile").write_text(TEMPLATE)
    write_notebook(mini_project / "notebooks" / "dep.ipynb", code("# mm4: remote\nx = 1"))
    done, run_dir, log = _run(mini_project)
    assert done.returncode == 1 and "BuildError" in done.stderr
    evalue = load_record(run_dir)["error"]["evalue"]
    assert 'RUN --mount needs BuildKit, not used because builder = "classic" in mm4.toml' in evalue, evalue
