"""Metrics by step: log_metrics(step=N, ...) draws curves; show --json carries them, diff draws
them side by side, the report overlays a notebook's runs (checked in chromium)."""

import json
import re
from html.parser import HTMLParser

import pytest
from conftest import load_record, run_dirs
from support import browser, code, mm4, write_notebook

from mm4watch.results.metrics import STEPS_NAME, log_metrics, read_steps
from mm4watch.views.format import sparkline

pytestmark = pytest.mark.usefixtures("kernel")

TRAIN = (
    "# mm4: remote\nfrom mm4watch import log_metrics\n"
    "for epoch in range(5):\n"
    "    log_metrics(step=epoch, loss=round(rate / (epoch + 1), 4), acc=0.5 + epoch / 10)\n"
)


def _run(project, *argv):
    done = mm4(["run", "notebooks/train.ipynb", *argv], cwd=project)
    assert done.returncode == 0, done.stderr
    return max(run_dirs(project), key=lambda d: load_record(d)["queued_at"])


def test_curves_of_a_run_in_show_diff_and_the_report(project, tmp_path):
    write_notebook(project / "notebooks" / "train.ipynb", code("rate = 1.0", tags=["parameters"]), code(TRAIN))
    a = _run(project)
    record = load_record(a)
    assert record["curves"] == {"acc": 5, "loss": 5}
    assert record["metrics"] == {"loss": 0.2, "acc": 0.9}  # the last value logged stays the metric
    shown = json.loads(mm4(["show", "--json", a.name], cwd=project).stdout)
    assert shown["steps"]["loss"] == [[0, 1.0], [1, 0.5], [2, 0.3333], [3, 0.25], [4, 0.2]]
    assert "loss (5 points)" in mm4(["show", a.name], cwd=project).stdout

    b = _run(project, "-p", "rate=2.0")
    said = mm4(["diff", a.name, b.name], cwd=project)
    assert said.returncode == 0, said.stderr
    text = said.stdout
    assert "curves (by step; A and B on one scale)" in text
    (line_a,) = [ln for ln in text.splitlines() if re.match(r"\s+loss\s+A ", ln)]
    (line_b,) = [ln for ln in text.splitlines() if re.match(r"\s+B .*at step 4", ln) and "0.4" in ln]
    assert "0.2 at step 4 (5 points)" in line_a
    # on one scale: B starts at the top (2.0), A lower (1.0)
    assert line_b.split("B ", 1)[1].startswith("█") and not line_a.split("A ", 1)[1].startswith("█")

    done = mm4(["report"], cwd=project)
    assert done.returncode == 0, done.stderr
    page = project / "results" / "index.html"
    dom = _Curves()
    dom.feed(browser("--dump-dom", page.as_uri()))
    assert set(dom.curves) == {"loss", "acc"}
    assert sorted(dom.curves["loss"]) == sorted([a.name, b.name])  # both runs overlaid, each a line
    assert all(len(points) == 5 for points in dom.points["loss"])
    browser("--window-size=1280,900", f"--screenshot={tmp_path / 'curves.png'}", page.as_uri())
    assert (tmp_path / "curves.png").stat().st_size > 5000


class _Curves(HTMLParser):
    def __init__(self):
        super().__init__()
        self.metric = None
        self.curves: dict[str, list[str]] = {}
        self.points: dict[str, list[list[str]]] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and "curves" in (a.get("class") or ""):
            self.metric = a["data-metric"]
        elif tag == "polyline" and self.metric and a.get("data-run"):
            self.curves.setdefault(self.metric, []).append(a["data-run"])
            self.points.setdefault(self.metric, []).append(a["points"].split())

    def handle_endtag(self, tag):
        if tag == "svg":
            self.metric = None


def test_steps_are_checked_and_bad_lines_skipped(tmp_path):
    log_metrics(tmp_path, {"loss": 1.0}, step=0)
    log_metrics(tmp_path, {"loss": 0.5}, step=1)
    for bad in ({"step": True}, {"step": 1.5}, {"step": "1"}):
        with pytest.raises(TypeError, match="step="):
            log_metrics(tmp_path, {"loss": 0.1}, **bad)
    with pytest.raises(TypeError, match="not a metric's name"):
        log_metrics(tmp_path, {"step": 3}, step=2)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"loss": 0.5}
    # what a notebook may also write by hand: lines that are not points are left out, and said
    with open(tmp_path / STEPS_NAME, "a") as fh:
        fh.write('not json\n{"loss": 2}\n{"step": "x", "loss": 2}\n{"step": 2, "loss": "nan", "acc": 1}\n[1]\n')
    problems: list[str] = []
    assert read_steps(tmp_path, problems) == {"loss": [[0, 1.0], [1, 0.5]], "acc": [[2, 1]]}
    assert problems == [f"metrics: 5 value(s) in {STEPS_NAME} are not points (a step and a number): left out"]


def test_sparkline_scales_and_buckets():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1, 1, 1]) == "▁▁▁"
    assert len(sparkline(list(range(1000)), width=32)) == 32
    assert sparkline([5.0], lo=0.0, hi=10.0) in ("▄", "▅")
