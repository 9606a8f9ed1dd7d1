"""The Docker executor against the fake Mini: a second engine reached only over SSH."""

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    code,
    first_run,
    load_record,
    mini_toml,
    mm4,
    mm4_background,
    most_at_once,
    on_mini,
    run_dirs,
    sweep_through_daemon,
    wait_for,
    write_notebook,
)
from support import git

from mm4watch.core import config
from mm4watch.core.names import run_key

pytestmark = pytest.mark.usefixtures("kernel")


def containers_of(mini, run_id):
    by_label = on_mini(mini, f"docker ps -a -q --filter label=mm4watch.run={run_id}").split()
    by_name = on_mini(mini, f"docker ps -a -q --filter name=mm4-run-{run_id}").split()
    return by_label + by_name


def test_run_on_the_mini_brings_everything_home(mini_project, mini):
    write_notebook(
        mini_project / "notebooks" / "remote.ipynb",
        code("# mm4: remote\nimport os, json, pathlib, platform"),
        code("n = 1", tags=["parameters"]),
        code(
            "out = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])\n"
            "status = dict(l.split(':\\t', 1) for l in pathlib.Path('/proc/self/status').read_text().splitlines() if ':\\t' in l)\n"
            "facts = {'uid': os.getuid(), 'cwd': os.getcwd(), 'nnp': status['NoNewPrivs'].strip(),\n"
            "         'cap_eff': status['CapEff'].strip(), 'n': n, 'helper': pathlib.Path('helper.txt').read_text()}\n"
            "(out / 'facts.json').write_text(json.dumps(facts))\n"
            "(out / 'nested').mkdir()\n(out / 'nested' / 'big.bin').write_bytes(os.urandom(3_000_000))\n"
            "(out / 'run.json').write_text('a notebook cannot overwrite the record')\n"
            "(out / '._facts.json').write_text('apple double')\n(out / 'nested' / '.DS_Store').write_text('finder')\n"
            "print('hello from the mini')"
        ),
    )
    (mini_project / "notebooks" / "helper.txt").write_text("shipped in the image")
    done = mm4(["run", "notebooks/remote.ipynb", "-p", "n=7"], cwd=mini_project)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(mini_project)
    record = load_record(run_dir)
    assert record["status"] == "succeeded"
    facts = json.loads((run_dir / "facts.json").read_text())
    assert facts == {
        "uid": 1000,
        "cwd": "/project/notebooks",
        "nnp": "1",
        "cap_eff": "0000000000000000",
        "n": 7,
        "helper": "shipped in the image",
    }
    assert (run_dir / "nested" / "big.bin").stat().st_size == 3_000_000
    assert {o["path"] for o in record["outputs"]} == {"facts.json", "nested/big.bin"}
    assert record["id"] in (run_dir / "run.json").read_text()  # the record, not the notebook's file
    ex = record["executor"]
    assert ex["name"] == "mini" and ex["type"] == "docker" and ex["host"].endswith(":" + mini["MINI_PORT"])
    assert ex["server_version"] and ex["arch"] and ex["os"] == "linux"
    assert (
        ex["image_built"] is True
        and ex["image"].startswith(f"mm4-{config.load(mini_project).project_key}:ctx-")
        and ex["image_id"].startswith("sha256:")
    )
    assert len(ex["context_hash"]) == 64
    assert "hello from the mini" in (run_dir / "run.log").read_text()
    assert (run_dir / "build.log").exists()
    # what the kernel ran with: the container's interpreter and its packages, not this machine's
    env_txt = (run_dir / "environment.txt").read_text().splitlines()
    assert env_txt[0].startswith("# python ") and "(cpython, /" in env_txt[0] and "# platform Linux-" in env_txt[1]
    assert any(line.startswith("papermill==") for line in env_txt)
    assert record["environment"]["packages"] == sum("==" in line for line in env_txt) > 10
    assert "environment.txt" not in {o["path"] for o in record["outputs"]}
    assert containers_of(mini, record["id"]) == []  # removed afterwards
    # the Mini was kept awake for the run (caffeinate -i, bounded by the run's timeout), and let go after
    assert "kept awake while the run lasts" in (run_dir / "run.log").read_text()
    calls = on_mini(mini, "cat /var/log/caffeinate.log").splitlines()
    (held,) = [line.split()[1] for line in calls if line.startswith("start ") and " -i -t " in line][-1:]
    wait_for(lambda: f"end {held}" in on_mini(mini, "cat /var/log/caffeinate.log"), what="caffeinate let go")

    # editing only the notebook reuses the image: no build; nor does Finder opening the project's folders
    write_notebook(mini_project / "notebooks" / "remote.ipynb", code("# mm4: remote\nprint('second')"))
    for folder in (mini_project, mini_project / "notebooks"):
        (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (folder / "._helper.txt").write_bytes(b"\0\5\26\7")
    (mini_project / "Icon\r").write_bytes(b"")
    done = mm4(["run", "notebooks/remote.ipynb"], cwd=mini_project)
    assert done.returncode == 0, done.stderr
    second = load_record(run_dirs(mini_project)[-1])
    assert second["executor"]["image_built"] is False and second["executor"]["image_id"] == ex["image_id"]
    assert second["executor"]["warm"] is True  # the first run left a started kernel waiting

    # the same project's code changes: a new image
    (mini_project / "lib.py").write_text(f"X = {time.time()!r}\n")
    done = mm4(["run", "notebooks/remote.ipynb"], cwd=mini_project)
    assert done.returncode == 0, done.stderr
    third = load_record(run_dirs(mini_project)[-1])
    assert third["executor"]["image_built"] is True and third["executor"]["image_id"] != ex["image_id"]

    gc = mm4(["gc", "--keep", "1"], cwd=mini_project)
    assert gc.returncode == 0 and f"removed {ex['image']}" in gc.stdout, gc.stdout + gc.stderr
    repo = ex["image"].split(":")[0]
    tags = on_mini(mini, f"docker images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' {repo}").split()
    assert tags == [third["executor"]["image"]]


def test_failure_on_the_mini_keeps_the_executed_notebook(mini_project, mini):
    write_notebook(
        mini_project / "notebooks" / "bad.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib\n(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'before.txt').write_text('x')"
        ),
        code("1 / 0"),
    )
    done = mm4(["run", "notebooks/bad.ipynb"], cwd=mini_project)
    assert done.returncode == 1
    (run_dir,) = run_dirs(mini_project)
    record = load_record(run_dir)
    assert (
        record["status"] == "failed"
        and record["error"]["ename"] == "ZeroDivisionError"
        and record["error"]["cell"] == 1
    )
    assert "ZeroDivisionError" in (run_dir / "executed.ipynb").read_text()
    assert (run_dir / "before.txt").read_text() == "x"
    assert containers_of(mini, record["id"]) == []


def test_timeout_stops_the_container_and_keeps_partial_results(mini_project, mini):
    write_notebook(
        mini_project / "notebooks" / "slow.ipynb",
        code(
            "# mm4: remote timeout=8s\nimport os, pathlib, time\n(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'partial.txt').write_text('so far')"
        ),
        code("time.sleep(600)"),
    )
    t0 = time.monotonic()
    done = mm4(["run", "notebooks/slow.ipynb"], cwd=mini_project)
    assert done.returncode == 1 and time.monotonic() - t0 < 90
    (run_dir,) = run_dirs(mini_project)
    record = load_record(run_dir)
    assert record["status"] == "timeout" and record["error"]["cell"] == 1
    assert (run_dir / "partial.txt").read_text() == "so far"
    assert containers_of(mini, record["id"]) == []


def test_cancel_and_periodic_harvest(mini_project, mini):
    (mini_project / "mm4.toml").write_text(mini_toml(mini, extra='harvest_every = "1s"\n'))
    write_notebook(
        mini_project / "notebooks" / "long.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib, time\n(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'step1.txt').write_text('done')"
        ),
        code("time.sleep(600)"),
    )
    child = mm4_background(["run", "notebooks/long.ipynb"], mini_project)
    first_run(
        mini_project,
        lambda d: (d / "step1.txt").exists(),
        timeout=120,
        what="partial results to come home while the run was going",
    )
    (run_dir,) = run_dirs(mini_project)
    assert (run_dir / "step1.txt").exists(), "partial results did not come home while the run was going"
    assert load_record(run_dir)["status"] == "running"
    logs = mm4(["logs", run_dir.name], cwd=mini_project)
    assert "Executing Cell" in logs.stdout

    cancel = mm4(["cancel", run_dir.name], cwd=mini_project)
    assert cancel.returncode == 0, cancel.stderr
    assert "cancelled" in cancel.stdout
    child.communicate(timeout=60)
    assert child.returncode == 1
    record = load_record(run_dir)
    assert record["status"] == "cancelled"
    assert (run_dir / "executed.ipynb").exists()
    assert containers_of(mini, record["id"]) == []


def test_build_error_is_a_failed_run_with_its_log(mini_project):
    (mini_project / "Dockerfile").write_text("FROM python:3.11-slim\nRUN echo 'about to fail' && false\n")
    write_notebook(mini_project / "notebooks" / "x.ipynb", code("# mm4: remote\nx = 1"))
    done = mm4(["run", "notebooks/x.ipynb"], cwd=mini_project)
    assert done.returncode == 1 and "BuildError" in done.stderr
    (run_dir,) = run_dirs(mini_project)
    record = load_record(run_dir)
    assert record["status"] == "failed" and record["error"]["ename"] == "BuildError"
    assert "about to fail" in (run_dir / "build.log").read_text()


def test_unreachable_mini_is_a_clear_error(mini_project, mini):
    (mini_project / "mm4.toml").write_text(mini_toml(mini, port="1"))
    write_notebook(mini_project / "notebooks" / "x.ipynb", code("# mm4: remote\nx = 1"))
    done = mm4(["run", "notebooks/x.ipynb"], cwd=mini_project)
    assert done.returncode == 75  # the executor could not be reached: nothing ran
    assert "cannot reach" in done.stderr and "Traceback" not in done.stderr
    assert f"ssh -p 1 {mini['MINI_USER']}@{mini['MINI_HOST']} true" in done.stderr
    assert run_dirs(mini_project) == []  # no run folder for a run that never happened
    doctor = mm4(["doctor"], cwd=mini_project)
    assert doctor.returncode == 1 and "FAIL  ssh" in doctor.stdout and "fix:" in doctor.stdout


def test_doctor_on_the_mini(mini_project):
    done = mm4(["doctor"], cwd=mini_project)
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("ssh", "docker socket", "awake", "engine", "base image", "free disk"):
        assert f"ok    {check}" in done.stdout
    assert "ok    builder: BuildKit (DOCKER_BUILDKIT=1, docker CLI 20.10" in done.stdout


def test_data_is_synced_and_mounted_read_only(mini_project, mini):
    mirror = "/srv/mm4-test-data"
    (mini_project / "mm4.toml").write_text(mini_toml(mini, extra=f'data = "{mirror}"\nsync_data = true\n'))
    (mini_project / "data").mkdir()
    (mini_project / "data" / "table.csv").write_text("a,b\n1,2\n")
    write_notebook(
        mini_project / "notebooks" / "reads.ipynb",
        code("# mm4: remote\nimport os, pathlib\nout = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])"),
        code(
            "text = pathlib.Path('../data/table.csv').read_text()\n"
            "try:\n    pathlib.Path('../data/new.txt').write_text('x')\n    wrote = 'yes'\n"
            "except OSError as e:\n    wrote = type(e).__name__\n"
            "(out / 'seen.txt').write_text(text + wrote)"
        ),
    )
    done = mm4(["run", "notebooks/reads.ipynb"], cwd=mini_project)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(mini_project)
    seen = (run_dir / "seen.txt").read_text()
    assert seen.startswith("a,b\n1,2\n") and not seen.endswith("yes")
    assert "table.csv" in on_mini(mini, f"ls {mirror}")


def test_limits_and_safety_settings_reach_the_engine(mini_project, mini):
    (mini_project / "mm4.toml").write_text(mini_toml(mini, extra='memory = "512m"\ncpus = 1.5\nwarm = false\n'))
    write_notebook(mini_project / "notebooks" / "limits.ipynb", code("# mm4: remote\nimport time\ntime.sleep(6)"))
    child = mm4_background(["run", "notebooks/limits.ipynb"], mini_project)

    def container_of_the_run():
        dirs = run_dirs(mini_project)
        if not dirs:
            return None
        out = on_mini(mini, f"docker inspect mm4-run-{run_key(dirs[0].name)} 2>/dev/null; true").strip() or "[]"
        return (json.loads(out) or [None])[0]

    inspected = wait_for(container_of_the_run, 120, "the run's container", every=0.3)
    child.communicate(timeout=120)
    assert child.returncode == 0
    host = inspected["HostConfig"]
    assert host["Memory"] == 512 * 2**20 and host["NanoCpus"] == 1_500_000_000
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["CapDrop"] == ["ALL"]
    assert inspected["Config"]["User"] == "1000:1000"
    assert inspected["Config"]["Labels"]["mm4watch.run"] == run_key(run_dirs(mini_project)[0].name)


def test_a_docker_context_names_the_engine(mini_project, mini, tmp_path):
    host = f"ssh://{mini['MINI_USER']}@{mini['MINI_HOST']}:{mini['MINI_PORT']}"
    subprocess.run(
        ["/usr/bin/docker", "context", "create", "fakemini", "--docker", f"host={host}"],
        check=True,
        capture_output=True,
    )
    toml = mini_toml(mini).replace(f'host = "{host}"', 'context = "fakemini"')
    assert 'context = "fakemini"' in toml
    (mini_project / "mm4.toml").write_text(toml)
    write_notebook(mini_project / "notebooks" / "ctx.ipynb", code("# mm4: remote\nprint('via a context')"))
    done = mm4(["run", "notebooks/ctx.ipynb"], cwd=mini_project)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(mini_project)
    assert load_record(run_dir)["executor"]["host"].endswith(":" + mini["MINI_PORT"])


def test_plain_tcp_is_refused(mini_project):
    (mini_project / "mm4.toml").write_text('[executors.lan]\ntype = "docker"\nhost = "tcp://mini.local:2375"\n')
    write_notebook(mini_project / "notebooks" / "x.ipynb", code("# mm4: remote executor=lan\nx = 1"))
    done = mm4(["run", "notebooks/x.ipynb"], cwd=mini_project)
    assert done.returncode == 2 and "unencrypted" in done.stderr and "mm4.toml:3" in done.stderr
    assert run_dirs(mini_project) == []


def test_a_local_engine_over_its_unix_socket(mini_project):
    (mini_project / "mm4.toml").write_text(
        '[run]\nexecutor = "here"\n\n[executors.here]\ntype = "docker"\nhost = "unix:///var/run/docker.sock"\nwarm = false\n'
    )
    write_notebook(
        mini_project / "notebooks" / "local.ipynb",
        code(
            "# mm4: remote\nimport os, pathlib\n(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'uid.txt').write_text(str(os.getuid()))"
        ),
    )
    done = mm4(["run", "notebooks/local.ipynb"], cwd=mini_project, timeout=600)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(mini_project)
    assert (run_dir / "uid.txt").read_text() == "1000"
    assert load_record(run_dir)["executor"]["host"] == "unix:///var/run/docker.sock"


def test_rerun_uses_the_runs_own_image(mini_project, mini):
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=mini_project, check=True)
    (mini_project / ".gitignore").write_text("results/\n.mm4/\n")
    write_notebook(mini_project / "notebooks" / "img.ipynb", code("# mm4: remote\nprint('image run')"))
    subprocess.run(["git", "add", "-A"], cwd=mini_project, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "img"], cwd=mini_project, check=True)
    assert mm4(["run", "notebooks/img.ipynb"], cwd=mini_project).returncode == 0
    first = load_record(run_dirs(mini_project)[0])
    (mini_project / "lib.py").write_text(f"X = {time.time()!r}\n")  # the project moved on: a new image would be built
    done = mm4(["rerun", first["id"]], cwd=mini_project)
    assert done.returncode == 0, done.stderr
    again = load_record(Path(done.stdout.strip()))
    assert again["rerun_of"] == first["id"] and again["executor"]["image_id"] == first["executor"]["image_id"]
    assert "the run's own image" in (Path(done.stdout.strip()) / "build.log").read_text()


@pytest.mark.parametrize(
    ("said", "again"),
    [
        ("push of r:5000/p:t failed: received unexpected HTTP status: 500 Internal Server Error", True),
        ("push of r:5000/p:t failed: 502 Server Error for http+docker://ssh/v1.41/images/...", True),
        ("push of r:5000/p:t failed: write tcp 172.30.0.11:5000: connection reset by peer", True),
        ("push of r:5000/p:t failed: unauthorized: authentication required", False),
        ("push of r:5000/p:t failed: name unknown: repository name not known to registry", False),
        ("push of r:5000/p:t failed: denied: requested access to the resource is denied", False),
    ],
)
def test_a_push_is_tried_again_only_for_a_registry_s_passing_trouble(said, again):
    """What a registry or engine says (canned text) decides whether a failed push is tried again."""
    from mm4watch.remote.docker_engine import _REGISTRY_HICCUP

    assert bool(_REGISTRY_HICCUP.search(said)) is again


def test_a_sweep_on_the_mini_and_its_environment_built_again_after_gc(mini_project, mini):
    """A 2x2 sweep through the daemon, two at once (concurrency = 2), never more; then the image it
    ran in removed by gc, and rerun --same-environment builds one from its environment.txt."""
    toml = mini_project / "mm4.toml"
    toml.write_text(toml.read_text().replace("[executors.mini]\n", "[executors.mini]\nconcurrency = 2\n")
                    + '\n[daemon]\ndebounce = "0.5s"\nnotify = false\n')  # fmt: skip
    assert "concurrency = 2" in toml.read_text()
    write_notebook(
        mini_project / "notebooks" / "sw.ipynb",
        code("a = 0\nb = 0", tags=["parameters"]),
        code("# mm4: remote\nimport json, os, pathlib, time\nt0 = time.time()\ntime.sleep(4)\n"
             "(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'span.json').write_text(json.dumps([t0, time.time()]))"),
    )  # fmt: skip
    git(mini_project, "init", "-q", "-b", "main")
    (mini_project / ".gitignore").write_text("results/\n.mm4/\n")
    git(mini_project, "add", "-A")
    git(mini_project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "sweep")
    records = sweep_through_daemon(mini_project, ["notebooks/sw.ipynb", "-p", "a=1,2", "-p", "b=3,4"], 4, timeout=400)
    dirs = run_dirs(mini_project)
    assert len({r["sweep"]["id"] for r in records}) == 1 and sorted(r["sweep"]["index"] for r in records) == [
        0,
        1,
        2,
        3,
    ]
    spans = [json.loads((d / "span.json").read_text()) for d in dirs]
    assert most_at_once(spans) <= 2, spans  # the capacity, never more
    assert all((d / "environment.txt").is_file() for d in dirs)
    first = records[0]

    # the project moves on: a new image; gc keeps only it, so the sweep's image is gone
    (mini_project / "lib.py").write_text(f"X = {time.time()!r}\n")
    write_notebook(mini_project / "notebooks" / "other.ipynb", code("# mm4: remote\nprint(1)"))
    assert mm4(["run", "notebooks/other.ipynb"], cwd=mini_project).returncode == 0
    gc = mm4(["gc", "--keep", "1"], cwd=mini_project)
    assert gc.returncode == 0 and f"removed {first['executor']['image']}" in gc.stdout, gc.stdout + gc.stderr

    done = mm4(["rerun", "--same-environment", first["id"]], cwd=mini_project, timeout=600)
    assert done.returncode == 0, done.stderr
    again_dir = Path(done.stdout.strip().splitlines()[-1])
    again = load_record(again_dir)
    assert again["executor"]["image_built"] is True and again["executor"]["image_id"] != first["executor"]["image_id"]
    assert "(--same-environment)" in (again_dir / "run.log").read_text()
    said = mm4(["diff", first["id"], again["id"]], cwd=mini_project).stdout
    assert "packages: same packages" in said, said
