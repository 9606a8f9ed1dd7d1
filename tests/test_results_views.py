"""Looking at results: metrics in run.json, history columns and sort, diff, the report page, open.

Real runs (real kernels), a real git repository, real nbconvert and nbdime, and
the page loaded from disk by a real headless Chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from conftest import load_record, run_dirs, wait_for
from support import REPO, browser, code, git, mm4, write_notebook

pytestmark = pytest.mark.usefixtures("kernel")

TRAIN = """
from mm4watch import log_metrics, output_dir
import json, pathlib
log_metrics(acc=round(0.5 + epochs / 100, 4), loss=round(1 / epochs, 4))
log_metrics(loss=round(2 / epochs, 4))  # a second call replaces a key and keeps the rest
out = output_dir()
(out / "eval").mkdir(exist_ok=True)
(out / "eval" / "scores.json").write_text(json.dumps({"eval": {"f1": epochs / 10, "split": {"n": 40}}, "note": "text"}))
(out / "eval" / "broken.json").write_text("{not json")
(out / "table.csv").write_text("a,b\\n1,%d\\n" % epochs)
"""

FIGURES = """
from mm4watch import output_dir
out = output_dir()
(out / "plot.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="teal"/></svg>')
import base64
# a 1x1 PNG
(out / "dot.png").write_bytes(base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="))
"""


def _train(project: Path, extra: str = "") -> Path:
    return write_notebook(
        project / "notebooks" / "train.ipynb",
        code("# mm4: remote\nepochs = 5\nlr = 0.1", tags=["parameters"]),
        code(TRAIN + extra),
    )


@pytest.fixture
def metrics_repo(repo: Path) -> Path:
    (repo / "mm4.toml").write_text(
        '[run]\nexecutor = "local"\ntimeout = "2m"\n[results]\nmetrics = ["metrics.json", "eval/*.json"]\n'
    )
    _train(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "train notebook")
    return repo


def _run(project: Path, *args: str) -> Path:
    done = mm4(["run", *args], cwd=project)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


def test_metrics_flat_nested_glob_and_malformed_are_recorded_without_failing_the_run(metrics_repo):
    run_dir = _run(metrics_repo, "notebooks/train.ipynb", "-p", "epochs=20")
    record = load_record(run_dir)
    assert record["status"] == "succeeded"
    assert record["metrics"] == {"acc": 0.7, "loss": 0.1, "eval.f1": 2.0, "eval.split.n": 40}
    assert json.loads((run_dir / "metrics.json").read_text()) == {"acc": 0.7, "loss": 0.1}
    log = (run_dir / "run.log").read_text()
    assert "eval/broken.json is not JSON" in log
    assert "eval/scores.json: not numbers, left out: note" in log
    assert not any(o["path"].endswith(".lock") for o in record["outputs"])  # log_metrics' lock is not an output
    shown = mm4(["show", run_dir.name], cwd=metrics_repo).stdout
    assert "acc=0.7" in shown and "eval.split.n=40" in shown


def _python(project: Path, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by a Python of its own in ``project``, as a notebook or a hand run would; it must succeed."""
    done = subprocess.run([sys.executable, "-c", script], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


def test_log_metrics_by_hand_merges_into_the_scratch_folder(project):
    script = (
        "from mm4watch import log_metrics\n"
        "log_metrics(a=1, b=2.5)\n"
        "print(log_metrics(b=3))\n"
        "try:\n    log_metrics(c='high')\nexcept TypeError as e:\n    print('refused:', e)\n"
    )
    done = _python(project, script)
    assert "{'a': 1, 'b': 3}" in done.stdout
    assert "refused: log_metrics: c='high' is not a finite number" in done.stdout
    assert json.loads((project / ".mm4" / "scratch" / "metrics.json").read_text()) == {"a": 1, "b": 3}
    assert not (project / "results").exists()


def _history(project: Path, *args: str) -> list[list[str]]:
    done = mm4(["history", *args], cwd=project)
    assert done.returncode == 0, done.stderr
    return [re.split(r"\s{2,}", line.strip()) for line in done.stdout.splitlines()]


def test_history_shows_parameters_and_metrics_and_sorts_by_them(metrics_repo):
    runs = {
        e: _run(metrics_repo, "notebooks/train.ipynb", "-p", f"epochs={e}", "-p", "lr=0.1").name for e in (5, 40, 10)
    }
    header, *rows = _history(metrics_repo)
    # the columns that differ come first; lr is the same in every run, so it comes after them
    extra = header[8:]
    assert extra[0] == "epochs" and "acc" in extra and extra.index("lr") > extra.index("loss")
    assert [r[0] for r in rows] == [runs[10], runs[40], runs[5]]  # newest first
    header, *rows = _history(metrics_repo, "--sort", "-acc")
    assert [r[0] for r in rows] == [runs[40], runs[10], runs[5]]
    assert rows[0][header.index("acc")] == "0.9"
    header, *rows = _history(metrics_repo, "--sort", "loss", "--columns", "loss,epochs")
    assert header[8:] == ["loss", "epochs"] and [r[0] for r in rows] == [runs[40], runs[10], runs[5]]
    # a parameter sorts too
    header, *rows = _history(metrics_repo, "--sort=epochs", "--columns", "")
    assert header == ["run", "notebook", "status", "trigger", "commit", "started", "duration", "executor"]
    assert [r[0] for r in rows] == [runs[5], runs[10], runs[40]]
    listed = json.loads(mm4(["history", "--json", "--sort", "-acc"], cwd=metrics_repo).stdout)
    assert [r["metrics"]["acc"] for r in listed] == [0.9, 0.6, 0.55]
    assert listed[0]["parameters"] == {"epochs": 40, "lr": 0.1}
    wrong = mm4(["history", "--columns", "accuracy"], cwd=metrics_repo)
    assert wrong.returncode == 2 and "no parameter or metric 'accuracy'" in wrong.stderr and "acc" in wrong.stderr


def test_latest_run_by_parameters_and_runs_with_metrics(metrics_repo):
    first = _run(metrics_repo, "notebooks/train.ipynb", "-p", "epochs=20")
    second = _run(metrics_repo, "notebooks/train.ipynb", "-p", "epochs=5")
    script = (
        "from mm4watch import latest_run, runs\n"
        "print(latest_run('train').name)\n"
        "print(latest_run('train', where={'epochs': 20}, status='succeeded').name)\n"
        "print([(r.parameters['epochs'], r.metrics['acc']) for r in runs('train')])\n"
        "print(len(runs('train', where={'epochs': 5})))\n"
        "try:\n    latest_run('train', where={'epochs': 99})\nexcept LookupError as e:\n    print('none:', e)\n"
    )
    lines = _python(metrics_repo, script).stdout.splitlines()
    assert lines[0] == second.name and lines[1] == first.name
    assert lines[2] == "[(20, 0.7), (5, 0.55)]"  # oldest first
    assert lines[3] == "1"
    assert "none: no successful run with epochs=99 of 'train'" in lines[4]


@pytest.fixture
def two_runs(metrics_repo: Path) -> tuple[Path, Path]:
    a = _run(metrics_repo, "notebooks/train.ipynb", "-p", "epochs=5")
    _train(metrics_repo, extra='(out / "extra.txt").write_text("new")\nprint("changed")\n')
    (metrics_repo / "notes.md").write_text("x")
    git(metrics_repo, "add", "-A")
    git(metrics_repo, "commit", "-q", "-m", "write extra.txt")
    git(metrics_repo, "commit", "-q", "--allow-empty", "-m", "second commit between")
    b = _run(metrics_repo, "notebooks/train.ipynb", "-p", "epochs=20")
    return a, b


def test_diff_of_two_runs_with_nbdime(metrics_repo, two_runs):
    a, b = two_runs
    done = mm4(["diff", a.name, b.name], cwd=metrics_repo)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "+ " in out and "write extra.txt" in out and "second commit between" in out
    assert re.search(r"epochs\s+5\s+20\s+changed", out)
    assert re.search(r"acc\s+0\.55\s+0\.7\s+\+0\.15 \(\+27\.3%\)", out)
    assert "+ extra.txt  (added)" in out and "~ table.csv  (changed)" in out and "~ metrics.json  (changed)" in out
    assert "source (nbdime)" in out
    assert '+(out / "extra.txt").write_text("new")' in out.replace("  ", "")
    data = json.loads(mm4(["diff", a.name, b.name, "--json"], cwd=metrics_repo).stdout)
    assert [c["subject"] for c in data["commits"]["ahead"]] == ["second commit between", "write extra.txt"]
    assert data["commits"]["behind"] == []
    metrics = {m["key"]: m for m in data["metrics"]}
    assert metrics["loss"]["delta"] == pytest.approx(0.1 - 0.4)
    assert data["outputs"]["added"] == ["extra.txt"] and "eval/scores.json" in data["outputs"]["changed"]
    assert data["source"]["tool"] == "nbdime"


def test_diff_of_two_runs_without_nbdime(metrics_repo, two_runs, tmp_path):
    a, b = two_runs
    plain = mm4(["diff", "--plain", a.name, b.name], cwd=metrics_repo)
    assert plain.returncode == 0 and "source (plain)" in plain.stdout
    assert '+(out / "extra.txt").write_text("new")' in plain.stdout and "## code cell 2 -> 2: changed" in plain.stdout
    # nbdime not installed: an import of it fails, and the plain diff is used
    blocker = tmp_path / "blocker"
    (blocker / "nbdime").mkdir(parents=True)
    (blocker / "nbdime" / "__init__.py").write_text("raise ImportError('nbdime is not installed')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    without = mm4(["diff", a.name, b.name], cwd=metrics_repo, env=env)
    assert without.returncode == 0, without.stderr
    assert "source (plain)" in without.stdout and '+(out / "extra.txt")' in without.stdout


# -- the report page, in a real browser ------------------------------------------------


class _Dom(HTMLParser):
    """The parts of the page the tests look at, from the DOM as Chromium dumped it."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.charts: list[tuple[str, str]] = []
        self.thumbs: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-run" in a:
            self.rows.append(a)
        elif tag == "svg" and "chart" in a.get("class", ""):
            self.charts.append((a["data-notebook"], a["data-metric"]))
        elif tag == "img" and "thumb" in a.get("class", ""):
            self.thumbs.append(a["src"])
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])


def _dom(url: str) -> _Dom:
    dom = _Dom()
    dom.feed(browser("--dump-dom", url))
    return dom


def test_report_page_in_a_realbrowser(metrics_repo, tmp_path):
    # a name as people write them: spaces, a quote, '#' and '?' (which a link must escape)
    write_notebook(metrics_repo / "notebooks" / "figures (copy) #1 it's?.ipynb", code("# mm4: remote\n" + FIGURES))
    write_notebook(metrics_repo / "notebooks" / "crash.ipynb", code("# mm4: remote\nraise RuntimeError('no')"))
    runs = [_run(metrics_repo, "notebooks/train.ipynb", "-p", f"epochs={e}") for e in (5, 10, 20)]
    runs.append(_run(metrics_repo, "notebooks/figures (copy) #1 it's?.ipynb"))
    crashed = mm4(["run", "notebooks/crash.ipynb"], cwd=metrics_repo)
    assert crashed.returncode == 1
    every = {d.name for d in run_dirs(metrics_repo)}
    done = mm4(["report"], cwd=metrics_repo)
    assert done.returncode == 0, done.stderr
    page = metrics_repo / "results" / "index.html"
    assert done.stdout.strip() == str(page)
    text = page.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing from the network
    dom = _dom(page.as_uri())
    assert {r["data-run"] for r in dom.rows} == every
    assert {(r["data-run"], r["data-status"]) for r in dom.rows if r["data-status"] == "failed"} == {
        (d, "failed") for d in every if d.startswith("crash_")
    }
    # one chart per metric of each notebook that has metrics
    assert sorted(dom.charts) == sorted(("train", m) for m in ("acc", "eval.f1", "eval.split.n", "loss"))
    figures = runs[3].name
    assert sorted(unquote(t) for t in dom.thumbs) == sorted([f"{figures}/dot.png", f"{figures}/plot.svg"])
    for href in dom.links + dom.thumbs:
        target = page.parent / unquote(urlparse(href).path)
        assert target.exists(), f"link {href} leads nowhere"
    # every ended run has its notebook as a page, linked from its row
    for name in every:
        assert (page.parent / name / "executed.html").is_file()
        assert f"{name}/executed.html" in [unquote(link) for link in dom.links]
    assert "https://cdnjs" not in (runs[0] / "executed.html").read_text()
    # filters and order come from the address
    filtered = _dom(page.as_uri() + "#notebook=train&sort=-duration")
    shown = [r["data-run"] for r in filtered.rows if "display: none" not in r.get("style", "")]
    assert sorted(shown) == sorted(r.name for r in runs[:3])
    durations = {r.name: load_record(r)["duration_s"] for r in runs[:3]}
    in_order = [durations[n] for n in shown]
    assert in_order == sorted(in_order, reverse=True), (shown, durations)
    failed_only = _dom(page.as_uri() + "#status=failed")
    assert [r["data-run"] for r in failed_only.rows if "display: none" not in r.get("style", "")] == [
        d for d in every if d.startswith("crash_")
    ]
    shot = tmp_path / "report.png"
    browser("--window-size=1280,900", f"--screenshot={shot}", page.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("SAVE_REPORT_SCREENSHOT"):
        shutil.copyfile(shot, REPO / "docs" / "report.png")


def test_report_survives_an_unreadable_notebook_and_renders_each_run_once(metrics_repo):
    good = _run(metrics_repo, "notebooks/train.ipynb")
    bad = _run(metrics_repo, "notebooks/train.ipynb", "-p", "epochs=7")
    (bad / "executed.ipynb").write_text("{not a notebook")
    first = mm4(["report"], cwd=metrics_repo)
    assert first.returncode == 0, first.stderr
    assert f"could not render {bad.name}/executed.ipynb" in first.stderr
    assert f"rendered {good.name}/executed.html" in first.stderr
    text = (metrics_repo / "results" / "index.html").read_text()
    assert f'href="{bad.name}/"' in text  # its row links to the folder instead
    again = mm4(["report"], cwd=metrics_repo)
    assert "rendered" not in again.stderr and "could not render" not in again.stderr


def test_rendering_a_run_leaves_out_jsonschemas_iri_parsers(metrics_repo):
    """The report after each run reads a notebook without rfc3987-syntax (1.3-1.8 s of CPU at its
    import), which JupyterLab's jupyter_events installs beside jsonschema: the html is the same."""
    import importlib.util

    assert importlib.util.find_spec("rfc3987_syntax") is not None, "the test needs rfc3987-syntax installed"
    run = _run(metrics_repo, "notebooks/train.ipynb")
    probe = (
        "import sys; from pathlib import Path; from mm4watch.views.report import render_html; "
        f"render_html(Path({str(run)!r})); import jsonschema; "
        "print(sys.modules.get('rfc3987_syntax', 'absent'), jsonschema.Draft4Validator({'type': 'object'}).is_valid({}))"
    )
    child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["None", "True"], child.stdout  # never imported; jsonschema still validates
    page = (run / "executed.html").read_text()
    assert "epochs" in page and "<html" in page.lower()


def test_open_a_run_or_the_report(metrics_repo, tmp_path):
    run_dir = _run(metrics_repo, "notebooks/train.ipynb")
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(0o755)
    env = {"BROWSER": str(browser)}
    done = mm4(["open", run_dir.name], cwd=metrics_repo, env=env)
    assert done.returncode == 0, done.stderr
    assert opened.read_text().split() == [(run_dir / "executed.html").as_uri()]
    assert (run_dir / "executed.html").is_file()
    done = mm4(["open"], cwd=metrics_repo, env=env)
    assert done.returncode == 0, done.stderr
    assert opened.read_text().split()[-1] == (metrics_repo / "results" / "index.html").as_uri()
    missing = mm4(["open", "nope"], cwd=metrics_repo, env=env)
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr


def test_the_daemon_keeps_the_report_current(metrics_repo):
    (metrics_repo / "mm4.toml").write_text(
        '[run]\nexecutor = "local"\ntimeout = "2m"\n[daemon]\ndebounce = "0.5s"\nnotify = false\n'
    )
    assert mm4(["start"], cwd=metrics_repo).returncode == 0
    try:
        _train(metrics_repo, extra="print('saved')\n")
        page = metrics_repo / "results" / "index.html"

        def listed() -> Any:
            dirs = run_dirs(metrics_repo)
            return dirs and page.exists() and all(f'data-run="{d.name}"' in page.read_text() for d in dirs) and dirs

        first = wait_for(listed, 120, "the report to list the saved run")
        # the page is written first, then the run's executed.html it links to
        wait_for(lambda: (first[0] / "executed.html").is_file(), 60, "the run's executed.html")
        _train(metrics_repo, extra="print('saved again')\n")
        both = wait_for(lambda: (d := listed()) and len(d) == 2 and d, 120, "the report to list the second run")
        assert len(both) == 2
    finally:
        mm4(["stop"], cwd=metrics_repo)


def test_log_metrics_on_the_mini_reaches_the_record(mini_project):
    (mini_project / "mm4.toml").write_text(
        (mini_project / "mm4.toml").read_text() + '\n[results]\nmetrics = ["metrics.json", "eval/*.json"]\n'
    )
    _train(mini_project)
    done = mm4(["run", "notebooks/train.ipynb", "-p", "epochs=20"], cwd=mini_project)
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(mini_project)
    record = load_record(run_dir)
    assert record["executor"]["type"] == "docker" and record["status"] == "succeeded"
    assert record["metrics"] == {"acc": 0.7, "loss": 0.1, "eval.f1": 2.0, "eval.split.n": 40}
    assert "eval/broken.json is not JSON" in (run_dir / "run.log").read_text()
