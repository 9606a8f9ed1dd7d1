"""Run images built with BuildKit by the Mini's own docker CLI, and the classic builder when it
cannot be used (against the fake Mini, a real engine 20.10 reached only over ssh)."""

import json
import re
import uuid

import pytest
from conftest import REPO, code, load_record, mini_toml, mm4, on_mini, run_dirs, write_notebook

pytestmark = pytest.mark.usefixtures("kernel")

TEMPLATE = (REPO / "mm4watch" / "templates" / "Dockerfile").read_text()


def _run(project, notebook="notebooks/dep.ipynb"):
    done = mm4(["run", notebook], cwd=project, timeout=900)
    run_dir = run_dirs(project)[-1]
    return done, run_dir, (run_dir / "build.log").read_text()


def test_a_dependency_change_installs_that_package_only_on_the_base(mini_project, mini):
    """The Dockerfile `mm4watch init` writes: adding a package keeps the base layer (and the uv
    layer) cached and installs that package only, from uv's cache mount on the Mini (nothing else
    downloaded) into a layer on top; the run imports the new package."""
    (mini_project / "Dockerfile").write_text(TEMPLATE)
    (mini_project / "requirements.txt").write_text("# nothing beyond papermill\n")
    write_notebook(
        mini_project / "notebooks" / "dep.ipynb",
        code("# mm4: remote\nimport os, pathlib, importlib.util\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])"),
        code("(out / 'six.txt').write_text(str(importlib.util.find_spec('six') is not None))"),
    )
    done, first, log = _run(mini_project)
    assert done.returncode == 0, done.stderr + log[-2000:]
    assert "with BuildKit (DOCKER_BUILDKIT=1, docker CLI 20.10" in log and "at /usr/bin/docker" in log
    assert "dependency base: requirements.txt as it is now (no image of the project on root@127.0.0.1:2222" in log
    assert (first / "six.txt").read_text() == "False"
    assert load_record(first)["executor"]["builder"] == "buildkit"

    # a comment no earlier build had: BuildKit would otherwise find this very step in its cache
    (mini_project / "requirements.txt").write_text(f"six  # {uuid.uuid4().hex}\n")
    done, second, log = _run(mini_project)
    assert done.returncode == 0, done.stderr + log[-2000:]
    assert (second / "six.txt").read_text() == "True"
    assert "(0 lines); 1 line(s) changed since are installed on top" in log, log[:600]
    assert re.search(r'RUN pip install --no-cache-dir "uv>=0\.5"\n(#\d+ sha256:\w+\n)?#\d+ CACHED', log), log[:3000]
    base_step = re.search(
        r"#(\d+) \[[^\]]*\d+/\d+\] RUN --mount=type=cache,target=/root/.cache/uv[^\n]*mm4-base\.lock /tmp/base", log
    )
    assert base_step and re.search(rf"\n#{base_step.group(1)} CACHED\n", log), log  # the base layer is kept
    # the layer on top: six only, from the cache or downloaded (nothing else)
    assert re.search(r"Installed 1 package in", log) and " + six==" in log, log
    prepared = re.search(r"Prepared (\d+) packages?", log)
    assert prepared is None or int(prepared.group(1)) <= 1, log
    image = load_record(second)["executor"]["image"]
    labels = json.loads(on_mini(mini, f"docker image inspect -f '{{{{json .Config.Labels}}}}' {image}"))
    assert labels["mm4watch.deps-base"] == ""  # the next build finds the base here

    gc = mm4(["gc"], cwd=mini_project)
    assert gc.returncode == 0, gc.stderr
    assert "BuildKit cache on root@127.0.0.1:2222 trimmed to 21475 MB (build_cache_max)" in gc.stdout, gc.stdout


def test_a_base_with_markers_and_quotes_reaches_the_base_layer_as_written(mini_project, mini):
    """The base travels as a build argument into a shell: quotes, semicolons and several lines
    arrive as written (the base layer installs six; the layer on top has nothing left to do)."""
    (mini_project / "Dockerfile").write_text(TEMPLATE)
    marker = f'six; python_version >= "3.0" and sys_platform != "{uuid.uuid4().hex}"'
    (mini_project / "requirements.txt").write_text(f"{marker}\n# and a comment\npackaging>=20  # papermill's too\n")
    write_notebook(mini_project / "notebooks" / "dep.ipynb", code("# mm4: remote\nimport six\nprint(six.__name__)"))
    done, run_dir, log = _run(mini_project)
    assert done.returncode == 0, done.stderr + log[-3000:]
    assert "dependency base: requirements.txt as it is now" in log
    image = load_record(run_dir)["executor"]["image"]
    labels = json.loads(on_mini(mini, f"docker image inspect -f '{{{{json .Config.Labels}}}}' {image}"))
    assert labels["mm4watch.deps-base"] == f"{marker}\npackaging>=20"
    base_lock = on_mini(mini, f"docker run --rm {image} cat /opt/venv/mm4-base.lock")
    assert re.search(r"(?m)^six==", base_lock), base_lock  # installed by the base layer, not on top


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
