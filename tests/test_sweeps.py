"""Sweeps: a grid of parameter sets queued as runs of one sweep, run by the daemon within the
executor's capacity; status, history and cancel by sweep."""

import json
import re

import pytest
from conftest import load_record, most_at_once, run_dirs, wait_for
from support import browser, code, mm4, notebook_json, write_notebook
from test_daemon import daemon_project  # noqa: F401 (the fixture)

from mm4watch.core.errors import UsageError
from mm4watch.triggers.params import grid

pytestmark = pytest.mark.usefixtures("kernel")

TIMED = (
    "# mm4: remote\nimport json, os, pathlib, time\nstarted = time.time()\ntime.sleep(pause)\n"
    "(pathlib.Path(os.environ['MM4_OUTPUT_DIR']) / 'span.json').write_text(json.dumps([started, time.time()]))"
)


def _sweep_id(said):
    found = re.search(r"queued sweep (\S+): ", said)
    assert found, said
    return found.group(1)


def test_a_2x2_sweep_runs_4_runs_of_one_sweep_never_more_at_once_than_the_capacity(daemon_project):  # noqa: F811
    toml = daemon_project / "mm4.toml"
    toml.write_text(
        toml.read_text().replace('executor = "local"', 'executor = "here"')
        + '[executors.here]\ntype = "local"\nconcurrency = 2\n'
    )
    curve = "\nfrom mm4watch import log_metrics\nfor step in range(3):\n    log_metrics(step=step, loss=a * step)"
    write_notebook(
        daemon_project / "notebooks" / "s.ipynb",
        code("a = 0\nb = 0\npause = 2", tags=["parameters"]),
        code(TIMED + curve),
    )
    done = mm4(["sweep", "notebooks/s.ipynb", "-p", "a=1,2", "-p", "b=x,y"], cwd=daemon_project)
    assert done.returncode == 0, done.stderr
    sweep = _sweep_id(done.stdout)
    assert "4 runs of notebooks/s.ipynb on here over a, b" in done.stdout and "mm4watch start" in done.stdout
    status = mm4(["status"], cwd=daemon_project).stdout
    assert f"sweep:   {sweep}: 0 of 4 ended, 0 running, 4 queued" in status, status
    assert f"sweep {sweep} 4/4" in status  # each queued run says which of the sweep it is

    assert mm4(["start"], cwd=daemon_project).returncode == 0
    wait_for(lambda: len([d for d in run_dirs(daemon_project) if load_record(d)["status"] == "succeeded"]) == 4,
             timeout=240, what="the sweep's 4 runs")  # fmt: skip
    records = [load_record(d) for d in run_dirs(daemon_project)]
    assert {r["sweep"]["id"] for r in records} == {sweep} and sorted(r["sweep"]["index"] for r in records) == [
        0,
        1,
        2,
        3,
    ]
    assert {r["sweep"]["of"] for r in records} == {4}
    by_index = {r["sweep"]["index"]: r["parameters"] for r in records}
    assert by_index == {0: {"a": 1, "b": "x"}, 1: {"a": 1, "b": "y"}, 2: {"a": 2, "b": "x"}, 3: {"a": 2, "b": "y"}}
    spans = [json.loads((d / "span.json").read_text()) for d in run_dirs(daemon_project)]
    most = most_at_once(spans)
    assert 1 <= most <= 2, spans  # the executor's capacity (concurrency = 2), never more

    listed = json.loads(mm4(["history", "--sweep", sweep, "--json"], cwd=daemon_project).stdout)
    assert len(listed) == 4 and {r["sweep"]["id"] for r in listed} == {sweep}
    none = mm4(["history", "--sweep", "nope"], cwd=daemon_project).stdout
    assert "no runs of sweep nope" in none
    assert f"sweep:   {sweep}" not in mm4(["status"], cwd=daemon_project).stdout  # ended: no longer under way

    # the report: each run's row names its sweep; the curves overlay the sweep's 4 runs (in chromium)
    assert mm4(["report"], cwd=daemon_project).returncode == 0
    dom = browser("--dump-dom", (daemon_project / "results" / "index.html").as_uri())
    assert (
        len(re.findall(rf'<div class="sw" data-sweep="{re.escape(sweep)}">sweep {re.escape(sweep)} [1-4]/4</div>', dom))
        == 4
    )
    assert f"loss by step, sweep {sweep}</figcaption>" in dom
    assert len(re.findall(r'<polyline class="curve" data-run="s_', dom)) == 4


def test_cancel_a_sweep_removes_what_waits_and_stops_what_runs(daemon_project):  # noqa: F811
    write_notebook(
        daemon_project / "notebooks" / "s.ipynb", code("a = 0\npause = 120", tags=["parameters"]), code(TIMED)
    )
    done = mm4(["sweep", "notebooks/s.ipynb", "-y", "a", "[1, 2, 3]"], cwd=daemon_project)
    assert done.returncode == 0, done.stderr
    sweep = _sweep_id(done.stdout)
    assert mm4(["start"], cwd=daemon_project).returncode == 0
    wait_for(lambda: [d for d in run_dirs(daemon_project) if load_record(d)["status"] == "running"], what="one running")
    cancelled = mm4(["cancel", "--sweep", sweep], cwd=daemon_project)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"sweep {sweep}: 2 queued run(s) removed, 1 running run(s) cancelled" in cancelled.stdout
    (run_dir,) = run_dirs(daemon_project)
    assert load_record(run_dir)["status"] in ("cancelled", "interrupted")
    assert "no sweep 'nope'" in mm4(["cancel", "--sweep", "nope"], cwd=daemon_project).stderr


def test_grid_product_zip_and_mistakes():
    assert grid(["a=1,2", "b=x,True"]) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": True}, {"a": 2, "b": "x"}, {"a": 2, "b": True},
    ]  # fmt: skip
    assert grid(["a=1,2"], [["lr", "[0.1, 0.01]"]], paired=True) == [{"lr": 0.1, "a": 1}, {"lr": 0.01, "a": 2}]
    assert grid(["name=one"]) == [{"name": "one"}]
    for argv, message in (
        (dict(plain=["a=1,,2"]), "empty value between commas"),
        (dict(plain=["a=1,2", "b=1"], paired=True), "a has 2, b has 1"),
        (dict(yaml_values=[["a", "3"]]), "a YAML list"),
        (dict(), "needs parameters to vary"),
        (dict(plain=["class=1,2"]), "Python keyword"),
    ):
        with pytest.raises(UsageError, match=message):
            grid(**argv)


def test_a_tagged_save_queues_the_sweep_its_tag_names(daemon_project):  # noqa: F811
    from test_daemon import jupyter_save

    from mm4watch.core.tags import read_tag

    nb = daemon_project / "notebooks" / "t.ipynb"
    cells = [
        code("a = 0\nb = ''\npause = 0", tags=["parameters"]),
        code(TIMED.replace("# mm4: remote", "# mm4: remote sweep=a:1,2;b:x")),
    ]
    write_notebook(nb, *cells)
    assert mm4(["start"], cwd=daemon_project).returncode == 0
    cells[0] = code("a = 0\nb = ''\npause = 0.1", tags=["parameters"])
    jupyter_save(nb, notebook_json(*cells))
    wait_for(lambda: len([d for d in run_dirs(daemon_project) if load_record(d)["status"] == "succeeded"]) == 2,
             timeout=180, what="the tag's sweep: 2 runs")  # fmt: skip
    records = sorted((load_record(d) for d in run_dirs(daemon_project)), key=lambda r: r["sweep"]["index"])
    assert [r["parameters"] for r in records] == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert {r["trigger"] for r in records} == {"save"} and len({r["sweep"]["id"] for r in records}) == 1
    # a malformed sweep option is the tag's error, said with its cell and line
    bad = json.dumps({"cells": [code("# mm4: remote sweep=a=1,2")], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    with pytest.raises(Exception, match=r"cell 0, line 1: sweep='a=1,2' is not KEY:V1,V2"):
        read_tag(bad.encode(), "x.ipynb")
