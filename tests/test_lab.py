"""The Lab extension's server side: its JSON handlers in a real Jupyter server (pytest-jupyter's
``jp_fetch``), behind the server's authentication, against a real project with real runs. The
tests drive the server's own event loop (``jp_asyncio_loop``): pytest-jupyter's fixtures are
imported here, for this module only, and none of its hooks are."""

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
import tornado.httpclient
from conftest import code, git, load_record, mm4, run_dirs, write_notebook
from pytest_jupyter.jupyter_core import *  # noqa: F403 (the fixtures jupyter_server's build on)
from pytest_jupyter.jupyter_server import *  # noqa: F403 (jp_fetch, jp_serverapp, ...)

pytestmark = pytest.mark.usefixtures("kernel")

TRAIN = "# mm4: remote\nfrom mm4watch import log_metrics\nlog_metrics(acc=0.5 + n / 10)\nprint('trained', n)"


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"mm4watch.lab": True}}}


@pytest.fixture
def lab_project(jp_root_dir):
    root = Path(jp_root_dir)
    (root / "mm4.toml").write_text('[run]\nexecutor = "local"\ntimeout = "2m"\n')
    (root / "notebooks").mkdir()
    write_notebook(root / "notebooks" / "train.ipynb", code("n = 1", tags=["parameters"]), code(TRAIN))
    return root


def _json(response):
    return json.loads(response.body.decode())


async def _fail(jp_fetch, *parts, **kwargs):
    with pytest.raises(tornado.httpclient.HTTPClientError) as err:
        await jp_fetch(*parts, **kwargs)
    return err.value


def test_status_runs_and_one_run_of_a_notebook(jp_fetch, lab_project, jp_asyncio_loop):
    jp_asyncio_loop.run_until_complete(_status_runs_and_one_run_of_a_notebook(jp_fetch, lab_project))


async def _status_runs_and_one_run_of_a_notebook(jp_fetch, lab_project):
    for n in (1, 2):
        assert mm4(["run", "notebooks/train.ipynb", "-p", f"n={n}"], cwd=lab_project).returncode == 0
    status = _json(await jp_fetch("mm4watch", "api", "status"))
    assert status["project"] == str(lab_project) and status["daemon"] is None and status["running"] == []
    runs = _json(await jp_fetch("mm4watch", "api", "runs", params={"notebook": "notebooks/train.ipynb"}))["runs"]
    assert [r["parameters"] for r in runs] == [{"n": 2}, {"n": 1}]  # newest first
    assert runs[0]["status"] == "succeeded" and runs[0]["metrics"] == {"acc": 0.7} and runs[0]["trigger"] == "manual"
    one = _json(await jp_fetch("mm4watch", "api", "runs", runs[1]["id"]))
    assert one["record"]["id"] == runs[1]["id"] and "trained 1" in one["log"]
    tail = _json(await jp_fetch("mm4watch", "api", "runs", runs[1]["id"], params={"log_from": str(one["log_next"])}))
    assert tail["log"] == "" and tail["log_next"] == one["log_next"]  # nothing new since


def test_a_malformed_run_json_is_skipped_and_paths_outside_are_refused(
    jp_fetch, lab_project, tmp_path, jp_asyncio_loop
):
    jp_asyncio_loop.run_until_complete(
        _a_malformed_run_json_is_skipped_and_paths_outside_are_refused(jp_fetch, lab_project, tmp_path)
    )


async def _a_malformed_run_json_is_skipped_and_paths_outside_are_refused(jp_fetch, lab_project, tmp_path):
    assert mm4(["run", "notebooks/train.ipynb"], cwd=lab_project).returncode == 0
    (good,) = run_dirs(lab_project)
    bad = lab_project / "results" / "train_20200101_000000"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    runs = _json(await jp_fetch("mm4watch", "api", "runs", params={"notebook": "notebooks/train.ipynb"}))["runs"]
    assert len(runs) == 1 and runs[0]["status"] == "succeeded"
    assert (await _fail(jp_fetch, "mm4watch", "api", "runs", bad.name)).code == 422
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "run.json").write_text(json.dumps(load_record(good)))
    os.symlink(outside, lab_project / "results" / "linked")  # a folder in results that leads out of it
    for run_id in ("linked", "..", "%2E%2E"):
        assert (await _fail(jp_fetch, "mm4watch", "api", "runs", run_id)).code == 404, run_id
    for notebook in ("../secret.ipynb", "/etc/passwd", "notebooks/../../x.ipynb", ""):
        error = await _fail(jp_fetch, "mm4watch", "api", "runs", params={"notebook": notebook})
        assert error.code == 400, notebook


def test_every_handler_wants_the_servers_login(jp_fetch, lab_project, jp_base_url, jp_http_port, jp_asyncio_loop):
    jp_asyncio_loop.run_until_complete(
        _every_handler_wants_the_servers_login(jp_fetch, lab_project, jp_base_url, jp_http_port)
    )


async def _every_handler_wants_the_servers_login(jp_fetch, lab_project, jp_base_url, jp_http_port):
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    assert mm4(["run", "notebooks/train.ipynb"], cwd=lab_project).returncode == 0
    (run,) = run_dirs(lab_project)
    for path, method in (("status", "GET"), ("runs?notebook=notebooks/train.ipynb", "GET"), ("runs", "POST"),
                         (f"runs/{run.name}", "GET"), (f"runs/{run.name}/cancel", "POST"),
                         (f"runs/{run.name}/rerun", "POST"), (f"diff?a={run.name}&b={run.name}", "GET"),
                         ("daemon/start", "POST"), ("events", "GET")):  # fmt: skip
        url = f"http://localhost:{jp_http_port}{jp_base_url}mm4watch/api/{path}"
        response = await client.fetch(url, method=method, body="{}" if method == "POST" else None, raise_error=False)
        assert response.code == 403, (path, response.code)
    client.close()


def test_queue_a_run_and_the_events_say_so(
    jp_fetch, lab_project, jp_base_url, jp_http_port, jp_auth_header, jp_asyncio_loop, jp_serverapp
):
    jp_asyncio_loop.run_until_complete(
        _queue_a_run_and_the_events_say_so(jp_fetch, lab_project, jp_base_url, jp_http_port, jp_auth_header)
    )
    watcher = jp_serverapp.web_app.settings["mm4watch_watcher"]

    async def forgotten() -> None:
        for _ in range(100):  # the closed page is let go of, and with no page the watcher stops looking
            if not watcher.listeners and (watcher.task is None or watcher.task.done()):
                return
            await asyncio.sleep(0.05)

    jp_asyncio_loop.run_until_complete(forgotten())
    assert not watcher.listeners and watcher.task.done()


async def _queue_a_run_and_the_events_say_so(jp_fetch, lab_project, jp_base_url, jp_http_port, jp_auth_header):
    # a page's event stream, as a browser opens it: one connection that stays open
    reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
    auth = "".join(f"{k}: {v}\r\n" for k, v in jp_auth_header.items())
    writer.write(f"GET {jp_base_url}mm4watch/api/events HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, head
    said = b""

    async def until(what: bytes) -> bytes:
        nonlocal said
        while what not in said:
            said += await asyncio.wait_for(reader.read(4096), 30)
        return said

    await until(b"retry:")
    queued = await jp_fetch(
        "mm4watch", "api", "runs", method="POST",
        body=json.dumps({"notebook": "notebooks/train.ipynb", "parameters": {"n": 5}}),
    )  # fmt: skip
    t0 = time.monotonic()
    assert queued.code == 201
    entry = _json(queued)["entry"]
    await until(b"queue.sqlite")  # the watcher told the open page
    assert b"event: change" in said and time.monotonic() - t0 < 10, said
    listed = json.loads(mm4(["queue", "--json"], cwd=lab_project).stdout)
    assert [(e["id"], e["parameters"]) for e in listed] == [(entry, {"n": 5})]
    status = _json(await jp_fetch("mm4watch", "api", "status"))
    assert [w["id"] for w in status["waiting"]] == [entry] and "content" not in status["waiting"][0]
    bad = await _fail(jp_fetch, "mm4watch", "api", "runs", method="POST",
                      body=json.dumps({"notebook": "notebooks/train.ipynb", "parameters": {"not a name": 1}}))  # fmt: skip
    assert bad.code == 400
    writer.close()  # the page goes away
    await writer.wait_closed()


def test_outside_a_project_the_answer_says_so(jp_fetch, jp_root_dir, jp_asyncio_loop):
    jp_asyncio_loop.run_until_complete(_outside_a_project_the_answer_says_so(jp_fetch, jp_root_dir))


async def _outside_a_project_the_answer_says_so(jp_fetch, jp_root_dir):
    error = await _fail(jp_fetch, "mm4watch", "api", "status")
    assert error.code == 404 and b"not an mm4watch project" in (error.response.body or b"") + str(error).encode()


def test_compare_tag_parameter_lines_rerun_cancel_and_the_daemon(jp_fetch, lab_project, jp_asyncio_loop):
    try:
        jp_asyncio_loop.run_until_complete(
            _compare_tag_parameter_lines_rerun_cancel_and_the_daemon(jp_fetch, lab_project)
        )
    finally:
        mm4(["stop"], cwd=lab_project)


async def _compare_tag_parameter_lines_rerun_cancel_and_the_daemon(jp_fetch, lab_project):
    write_notebook(lab_project / "notebooks" / "plain.ipynb", code("print('no tag')"))
    assert mm4(["run", "notebooks/plain.ipynb"], cwd=lab_project).returncode == 0  # outside git: no exact input
    (outside_git,) = run_dirs(lab_project)
    refused = await _fail(jp_fetch, "mm4watch", "api", "runs", outside_git.name, "rerun", method="POST", body="{}")
    assert refused.code == 409 and "outside a git repository" in str(refused.response.reason or "")
    git(lab_project, "init", "-q", "-b", "main")
    (lab_project / ".gitignore").write_text("results/\n.mm4/\n")
    git(lab_project, "add", "-A")
    git(lab_project, "commit", "-q", "-m", "init")
    for n in (1, 2):
        assert mm4(["run", "notebooks/train.ipynb", "-p", f"n={n}"], cwd=lab_project).returncode == 0
    status = _json(await jp_fetch("mm4watch", "api", "status"))
    assert (status["prefix"], status["results"], status["executors"], status["default_executor"]) == (
        "", "results", ["local"], "local")  # fmt: skip
    found = _json(await jp_fetch("mm4watch", "api", "runs", params={"notebook": "notebooks/train.ipynb"}))
    assert found["tagged"] is True and found["tag"] == {} and found["tag_error"] is None
    assert all(r["folder"] == f"results/{r['id']}" for r in found["runs"])
    plain = _json(await jp_fetch("mm4watch", "api", "runs", params={"notebook": "notebooks/plain.ipynb"}))
    assert plain["tagged"] is False and [r["id"] for r in plain["runs"]] == [outside_git.name]
    new, old = found["runs"]

    diff = _json(await jp_fetch("mm4watch", "api", "diff", params={"a": old["id"], "b": new["id"]}))
    assert [p for p in diff["parameters"] if p["key"] == "n"][0]["a"] == 1, diff["parameters"]
    assert "parameters" in diff["text"] and "acc" in diff["text"] and new["id"] in diff["text"]
    assert (await _fail(jp_fetch, "mm4watch", "api", "diff", params={"a": old["id"], "b": ".."})).code == 404

    # "Run on the Mini" sends the parameters cell's lines as typed: Python literals, comments, blanks
    lines = ["n = 7  # the seventh", "name = 'x'", "", "# left out", "rate = 1e-3"]
    queued = await jp_fetch("mm4watch", "api", "runs", method="POST",
                            body=json.dumps({"notebook": "notebooks/train.ipynb", "lines": lines}))  # fmt: skip
    entry = _json(queued)["entry"]
    listed = json.loads(mm4(["queue", "--json"], cwd=lab_project).stdout)
    assert [(e["id"], e["parameters"]) for e in listed] == [(entry, {"n": 7, "name": "x", "rate": 0.001})]
    for bad in (["7 = x"], ["class = 1"], "n = 1"):
        error = await _fail(jp_fetch, "mm4watch", "api", "runs", method="POST",
                            body=json.dumps({"notebook": "notebooks/train.ipynb", "lines": bad}))  # fmt: skip
        assert error.code == 400, bad
    assert mm4(["queue", "clear"], cwd=lab_project).returncode == 0

    not_running = await _fail(jp_fetch, "mm4watch", "api", "runs", old["id"], "cancel", method="POST", body="{}")
    assert not_running.code == 409
    again = await jp_fetch("mm4watch", "api", "runs", old["id"], "rerun", method="POST", body="{}")
    assert again.code == 202

    def rerun_done() -> list:
        return [r for r in (load_record(d) for d in run_dirs(lab_project)) if r.get("rerun_of") == old["id"]
                and r["status"] == "succeeded"]  # fmt: skip

    deadline = time.monotonic() + 120
    while not rerun_done() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    (rerun,) = rerun_done()
    assert rerun["parameters"] == {"n": 1}

    started = await jp_fetch("mm4watch", "api", "daemon", "start", method="POST", body="{}")
    assert started.code == 200 and _json(started)["started"] is True
    assert _json(await jp_fetch("mm4watch", "api", "status"))["daemon"]["pid"] > 0
