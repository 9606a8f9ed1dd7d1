"""The docker executor against a Mac's Docker as a non-root account meets it (tests/rig/macdocker.sh):
Docker Desktop (socket in ~/.docker/run, `credsStore: desktop` whose helper cannot reach the keychain
over ssh, the base image only in a registry that challenges as Docker Hub does) and colima with
Homebrew's docker (socket in ~/.colima/default, CLI 26 in /opt/homebrew/bin, docker-buildx installed
but not linked). Neither has a docker CLI on the PATH ssh gives."""

import json
import re
import time
import uuid

import pytest
from conftest import (
    REPO,
    code,
    container_project,
    load_record,
    macdocker_toml,
    mm4,
    mm4_background,
    on_macdocker,
    run_dirs,
    wait_beside,
    write_notebook,
)

from mm4watch.remote import docker_products

pytestmark = pytest.mark.usefixtures("kernel")

TEMPLATE = (REPO / "mm4watch" / "templates" / "Dockerfile").read_text()
PRODUCT = {"desktop": ("Docker Desktop", "/home/me/.docker/run/docker.sock", "/usr/local/bin/docker"),
           "colima": ("colima", "/home/me/.colima/default/docker.sock", "/opt/homebrew/bin/docker")}  # fmt: skip


@pytest.fixture(params=["desktop", "colima"])
def mac_engine(request, tmp_path, macdocker):
    """A fresh project (the Dockerfile `mm4watch init` writes) whose runs go to one of the two."""
    project = container_project(tmp_path, macdocker_toml(macdocker, request.param))
    (project / "Dockerfile").write_text(TEMPLATE)
    return project, request.param


def _run(project, notebook, *extra):
    done = mm4(["run", notebook, *extra], cwd=project, timeout=900)
    run_dir = run_dirs(project)[-1] if run_dirs(project) else None
    log = (run_dir / "build.log").read_text() if run_dir and (run_dir / "build.log").exists() else ""
    return done, run_dir, log


def test_a_fresh_projects_first_run_builds_with_buildkit_and_a_dependency_change_adds_one_package(
    mac_engine, macdocker
):
    project, which = mac_engine
    product, socket, cli = PRODUCT[which]
    if which == "desktop":
        # the base image only in the registry; by hand, BuildKit asks the keychain helper and fails
        on_macdocker(macdocker, which, "docker image rm python:3.11-slim >/dev/null 2>&1 || true")
        assert on_macdocker(macdocker, which, "docker image inspect python:3.11-slim", check=False) == "[]\n"
        by_hand = on_macdocker(
            macdocker, which,
            "mkdir -p hand && cd hand && printf 'FROM python:3.11-slim\\nRUN true\\n' >Dockerfile && "
            "DOCKER_CONFIG=$HOME/.docker docker build --no-cache -t mm4-hand . 2>&1; true",
        )  # fmt: skip
        assert "error getting credentials" in by_hand and "keychain cannot be accessed" in by_hand, by_hand
    else:
        # by hand, Homebrew's CLI does not find the plugin Homebrew installed
        said = on_macdocker(macdocker, which, "DOCKER_CONFIG=$HOME/.docker docker buildx version 2>&1; true")
        assert "'buildx' is not a docker command" in said, said
    (project / "requirements.txt").write_text("# nothing beyond papermill\n")
    write_notebook(
        project / "notebooks" / "dep.ipynb",
        code(
            "# mm4: remote\nimport os, json, pathlib, importlib.util\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])"
        ),
        code(
            "status = dict(l.split(':\\t', 1) for l in pathlib.Path('/proc/self/status').read_text().splitlines() if ':\\t' in l)\n"
            "(out / 'facts.json').write_text(json.dumps({'uid': os.getuid(), 'nnp': status['NoNewPrivs'].strip(),\n"
            "    'six': importlib.util.find_spec('six') is not None}))"
        ),
    )
    done, first, log = _run(project, "notebooks/dep.ipynb")
    assert done.returncode == 0, done.stderr + log[-3000:]
    assert f"with BuildKit (buildx, docker CLI 26.1.5+dfsg1 at {cli})" in log, log[:2000]
    assert f"({product})" in log.splitlines()[0], log[:400]
    assert "the --mount option requires BuildKit" not in log
    if which == "desktop":
        assert "pulling python:3.11-slim on me@127.0.0.1:2261 (through the engine)" in log, log[:1000]
        assert "error getting credentials" not in log
    record = load_record(first)
    assert record["executor"]["builder"] == "buildkit" and record["executor"]["docker"] == product
    assert json.loads((first / "facts.json").read_text()) == {"uid": 1000, "nnp": "1", "six": False}

    # the notebook edited: the same image, the warm container the first run left
    write_notebook(project / "notebooks" / "dep.ipynb", code("# mm4: remote\nprint('again')"))
    done, second, log = _run(project, "notebooks/dep.ipynb")
    assert done.returncode == 0, done.stderr
    assert load_record(second)["executor"]["image_built"] is False and load_record(second)["executor"]["warm"] is True

    # a dependency change: the base layer kept, the one package installed on top
    write_notebook(
        project / "notebooks" / "dep.ipynb",
        code("# mm4: remote\nimport os, pathlib, six\n(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'six.txt').write_text(six.__name__)"),
    )  # fmt: skip
    (project / "requirements.txt").write_text(f"six  # {uuid.uuid4().hex}\n")
    done, third, log = _run(project, "notebooks/dep.ipynb")
    assert done.returncode == 0, done.stderr + log[-3000:]
    assert (third / "six.txt").read_text() == "six"
    assert "1 line(s) changed since are installed on top" in log and " + six==" in log, log[-3000:]
    assert re.search(r"Installed 1 package in", log), log[-3000:]


def test_doctor_names_the_product_and_its_socket(mac_engine):
    project, which = mac_engine
    product, socket, cli = PRODUCT[which]
    done = mm4(["doctor"], cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok    docker socket: {product}: {socket}" in done.stdout, done.stdout
    assert f"ok    builder: BuildKit (buildx, docker CLI 26.1.5+dfsg1 at {cli})" in done.stdout, done.stdout


def test_without_buildx_doctor_fails_and_the_run_fails_at_once_with_the_fix(tmp_path, macdocker):
    """A CLI whose BuildKit is the buildx plugin, and none anywhere: never the classic builder's error."""
    toml = macdocker_toml(macdocker, "colima", extra='docker_cli = "/opt/nobuildx/bin/docker"\n')
    project = container_project(tmp_path, toml)
    (project / "Dockerfile").write_text(TEMPLATE)
    write_notebook(project / "notebooks" / "x.ipynb", code("# mm4: remote\nx = 1"))
    doctor = mm4(["doctor"], cwd=project)
    assert doctor.returncode == 1, doctor.stdout
    assert (
        "FAIL  builder: the docker CLI 26.1.5+dfsg1 at /opt/nobuildx/bin/docker on me@127.0.0.1:2262 (colima) "
        "has no buildx plugin"
    ) in doctor.stdout, doctor.stdout
    assert f"fix: {docker_products.BUILDX_FIX}" in doctor.stdout
    t0 = time.monotonic()
    done, run_dir, log = _run(project, "notebooks/x.ipynb")
    assert done.returncode == 1 and "BuildError" in done.stderr, done.stderr
    assert time.monotonic() - t0 < 120  # no build was tried: the CLI's check and nothing after it
    evalue = load_record(run_dir)["error"]["evalue"]
    assert "has no buildx plugin" in evalue and "brew install docker-buildx" in evalue, evalue
    assert "the --mount option requires BuildKit" not in evalue and "Step 1/" not in log  # no classic build tried
    assert "has no buildx plugin" in log  # build.log says it too

    # a Dockerfile the classic builder can build: it builds, saying why; doctor warns
    (project / "Dockerfile").write_text("FROM python:3.11-slim\nRUN pip install --no-cache-dir papermill ipykernel\n")
    doctor = mm4(["doctor"], cwd=project)
    assert doctor.returncode == 0 and "warn  builder: the classic builder builds" in doctor.stdout, doctor.stdout
    done, run_dir, log = _run(project, "notebooks/x.ipynb")
    assert done.returncode == 0, done.stderr + log[-2000:]
    assert "with the classic builder" in log.splitlines()[0] and "has no buildx plugin" in log.splitlines()[0]


def test_cancel_data_and_earlier_results(mac_engine, macdocker):
    """The data folder synced into the account's home and mounted read-only; a run loading an earlier
    run's results from the copy on the Mini; a run cancelled part-way, its partial results home."""
    project, which = mac_engine
    data = f"/home/me/mm4-test-data-{uuid.uuid4().hex[:8]}"
    (project / "mm4.toml").write_text(
        macdocker_toml(macdocker, which, extra=f'data = "{data}"\nsync_data = true\nharvest_every = "1s"\n')
    )
    (project / "data").mkdir()
    (project / "data" / "table.csv").write_text("a,b\n1,2\n")
    write_notebook(
        project / "notebooks" / "A_make.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib\ntext = pathlib.Path('../data/table.csv').read_text()\n"
            "try:\n    pathlib.Path('../data/new.txt').write_text('x')\n    wrote = 'yes'\n"
            "except OSError as e:\n    wrote = type(e).__name__\n"
            "(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'seen.txt').write_text(text + wrote)"
        ),
    )
    write_notebook(
        project / "notebooks" / "B_load.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib, time\nfrom mm4watch import latest_run\n"
            "out = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])\n"
            "(out / 'loaded.txt').write_text((latest_run('A_make') / 'seen.txt').read_text())"
        ),
        code("time.sleep(600)"),
    )
    done, a, log = _run(project, "notebooks/A_make.ipynb")
    assert done.returncode == 0, done.stderr + log[-2000:]
    seen = (a / "seen.txt").read_text()
    assert seen.startswith("a,b\n1,2\n") and not seen.endswith("yes"), seen
    assert "table.csv" in on_macdocker(macdocker, which, f"ls {data}")

    child = mm4_background(["run", "notebooks/B_load.ipynb"], project)
    b = wait_beside(
        child,
        lambda: next(
            (d for d in run_dirs(project) if d.name.startswith("B_load_") and (d / "loaded.txt").exists()), None
        ),
        timeout=240,
        what="B's first cell's file, home while B runs",
    )
    assert (b / "loaded.txt").read_text() == seen
    cancel = mm4(["cancel", b.name], cwd=project)
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout, cancel.stdout + cancel.stderr
    child.communicate(timeout=120)
    assert child.returncode == 1
    assert load_record(b)["status"] == "cancelled" and (b / "executed.ipynb").exists()
    left = on_macdocker(macdocker, which, f"docker ps -a -q --filter label=mm4watch.run={load_record(b)['id']}")
    assert left.split() == []
    on_macdocker(macdocker, which, f"rm -rf {data}")


@pytest.mark.parametrize(
    "said, socket, product",
    [
        ("home /Users/me\nsocket /Users/me/.docker/run/docker.sock\n", "/Users/me/.docker/run/docker.sock", "Docker Desktop"),
        # two there: the current docker context says which
        ("home /Users/me\nsocket /Users/me/.docker/run/docker.sock\nsocket /Users/me/.orbstack/run/docker.sock\n"
         "context unix:///Users/me/.orbstack/run/docker.sock\n", "/Users/me/.orbstack/run/docker.sock", "OrbStack"),
        # a context pointing elsewhere (a remote engine): the first known socket
        ("home /Users/me\nsocket /Users/me/.colima/default/docker.sock\nsocket /var/run/docker.sock\n"
         "context tcp://10.0.0.2:2376\n", "/Users/me/.colima/default/docker.sock", "colima"),
        ("home /Users/me\nsocket /Users/me/.rd/docker.sock\n", "/Users/me/.rd/docker.sock", "Rancher Desktop"),
        ("home /root\nsocket /var/run/docker.sock\n", "/var/run/docker.sock", "the default socket"),
        ("home /Users/me\n", None, "none"),
    ],
)  # fmt: skip
def test_the_socket_is_chosen_by_context_then_by_product(said, socket, product):
    found = docker_products.parse(said)
    assert (found.socket, found.product) == (socket, product)
