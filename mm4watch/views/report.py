"""The report page: ``results/index.html``, one self-contained file that opens from disk.

It lists every run (sortable, filterable by notebook and status), charts each
metric across a notebook's runs (inline SVG), shows thumbnails of the images a
run wrote and links each run to its executed notebook rendered as HTML
(``executed.html``, made once per run with nbconvert). No script, style or font
comes from the network. A refresh reads the history index (incremental) and
renders only the runs that have no ``executed.html`` yet; refreshes are
serialised by a lock, and one asked for while another runs is done after it.
"""

from __future__ import annotations

import fcntl
import html
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from ..core.config import Config
from ..core.fsutil import atomic_write_text
from ..results.records import EXECUTED_NAME, HTML_NAME, RunRecord
from ..results.store import History
from . import format

REPORT_NAME = "index.html"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".gif")
CSP = (
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; font-src 'self' data:; form-action 'none'; base-uri 'none'\">"
)
THUMBS_PER_RUN = 3
CHART_POINTS = 500  # a chart shows a notebook's latest runs, at most this many
CURVE_RUNS = 8  # a notebook's latest runs with curves drawn over each other, at most this many
SWEEP_RUNS = 16  # a sweep's runs drawn over each other, at most this many
CURVE_POINTS = 400  # points drawn per run's curve (a longer one is thinned evenly)
COLOURS = (
    "#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41", "#546e7a",
    "#3949ab", "#c0ca33", "#d81b60", "#00acc1", "#5e35b1", "#7cb342", "#f4511e", "#757575",
)  # fmt: skip
_STATE_NAME = "report.json"  # runs nbconvert could not render, so they are not tried at every refresh
_LOCK_NAME = "report.lock"
_AGAIN_NAME = "report.again"


def refresh(config: Config, *, say: Callable[[str], None] = lambda _: None) -> Path:
    """Write ``results/index.html`` anew, then the new runs' ``executed.html``; the page's path."""
    state = config.state_dir
    state.mkdir(parents=True, exist_ok=True)
    again = state / _AGAIN_NAME
    path = config.results_dir / REPORT_NAME
    while True:
        with open(state / _LOCK_NAME, "a") as lock:
            if not _try_lock(lock):
                # another refresh is under way: it goes once more when it sees `again` after letting go;
                # if it let go just before the flag was set, the lock is free now and this one goes
                again.touch()
                if not _try_lock(lock):
                    return path
            again.unlink(missing_ok=True)
            path = _write(config, say)
        if not again.exists():
            return path


def _try_lock(fh: IO[str]) -> bool:
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _write(config: Config, say: Callable[[str], None]) -> Path:
    records = History(config.results_dir, config.state_dir).query()
    failed = _unrenderable(config)
    have, to_render = _rendered(config.results_dir, records, failed)
    # the page first, linking the runs about to be rendered: it is current as soon as it can be
    path = _write_page(config, records, have | set(to_render))
    lost = False
    for run_id in to_render:
        try:
            render_html(config.results_dir / run_id)
            say(f"rendered {run_id}/{HTML_NAME}")
        except Exception as exc:  # a notebook nbconvert cannot read must not stop the page
            failed[run_id] = f"{type(exc).__name__}: {exc}"[:300]
            lost = True
            say(f"could not render {run_id}/{EXECUTED_NAME}: {failed[run_id]}")
    if lost:
        atomic_write_text(config.state_dir / _STATE_NAME, json.dumps({"unrenderable": failed}, indent=1))
        have, _ = _rendered(config.results_dir, records, failed)
        path = _write_page(config, records, have)  # its row links to the folder instead
    return path


def _write_page(config: Config, records: list[RunRecord], rendered: set[str]) -> Path:
    config.results_dir.mkdir(parents=True, exist_ok=True)
    path = config.results_dir / REPORT_NAME
    atomic_write_text(path, build_page(config.root.name, records, rendered, config.results_dir))
    return path


def _unrenderable(config: Config) -> dict[str, str]:
    try:
        found = json.loads((config.state_dir / _STATE_NAME).read_text(encoding="utf-8")).get("unrenderable", {})
        return dict(found)
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def _rendered(results: Path, records: list[RunRecord], failed: dict[str, str]) -> tuple[set[str], list[str]]:
    """Runs that have an ``executed.html``, and ended runs that could have one but do not yet."""
    have: set[str] = set()
    missing: list[str] = []
    base = str(results)
    for record in records:
        folder = os.path.join(base, record.id)
        if os.path.exists(os.path.join(folder, HTML_NAME)):
            have.add(record.id)
        elif record.is_final and record.id not in failed and os.path.isfile(os.path.join(folder, EXECUTED_NAME)):
            missing.append(record.id)
    return have, missing


def render_html(run_dir: Path) -> Path:
    """``executed.html`` beside ``executed.ipynb``: nbconvert's page, with nothing fetched from a CDN."""
    from ..core.lean_imports import nbformat

    nbf = nbformat()
    from nbconvert import HTMLExporter

    nb = nbf.read(str(run_dir / EXECUTED_NAME), as_version=4)
    offline = {
        name: ""
        for name in (
            "mathjax_url",
            "require_js_url",
            "jquery_url",
            "mermaid_js_url",
            "mermaid_layout_elk_js_url",
            "widget_renderer_url",
            "jupyter_widgets_base_url",
        )
    }
    body, _ = HTMLExporter(**offline).from_notebook_node(nb)
    body = re.sub(r'<script src="">\s*</script>', "", body)
    # what the notebook displayed (HTML, markdown) came from a run, maybe from a container on the
    # Mini: like Jupyter with an untrusted notebook, the page runs none of it. Images, styles and
    # fonts from the page itself stay; math shows as its TeX source (no MathJax offline anyway)
    body = re.sub(r"<head>", f"<head>\n{CSP}", body, count=1, flags=re.IGNORECASE)
    path = run_dir / HTML_NAME
    atomic_write_text(path, body)
    return path


# -- the page -------------------------------------------------------------------


_SPECIAL = re.compile(r"[&<>\"']")


def _e(text: Any) -> str:
    text = str(text)
    return html.escape(text, quote=True) if _SPECIAL.search(text) else text


def notebook_labels(notebooks: set[str]) -> dict[str, str]:
    """How the page names each notebook: its name, or its path where two notebooks share a name."""
    stems: dict[str, int] = {}
    for path in notebooks:
        stems[Path(path).stem] = stems.get(Path(path).stem, 0) + 1
    return {path: Path(path).stem if stems[Path(path).stem] == 1 else path for path in notebooks}


def _row(record: RunRecord, rendered: set[str], label: str) -> str:
    run = record.id
    folder = quote(run)
    link = f"{folder}/{HTML_NAME}" if run in rendered else folder + "/"
    params = "".join(f"<div>{_e(k)}={_e(format.value(v, width=None))}</div>" for k, v in record.parameters.items())
    metrics = "".join(f"<div>{_e(k)}={_e(format.value(v, width=None))}</div>" for k, v in record.metrics.items())
    images = [o["path"] for o in record.outputs if o["path"].lower().endswith(IMAGE_SUFFIXES)]
    thumbs = "".join(
        # an SVG opened by itself is a document that runs its scripts; as an <img> it runs none
        f'<a href="{folder}/{"" if p.lower().endswith(".svg") else quote(p)}">'
        f'<img class="thumb" loading="lazy" alt="{_e(p)}" src="{folder}/{quote(p)}"></a>'
        for p in images[:THUMBS_PER_RUN]
    )
    if len(images) > THUMBS_PER_RUN:
        thumbs += f'<a class="more" href="{folder}/">+{len(images) - THUMBS_PER_RUN}</a>'
    s = record.sweep or {}
    sweep = (
        f'<div class="sw" data-sweep="{_e(s["id"])}">sweep {_e(s["id"])} {int(s.get("index", 0)) + 1}/{_e(s.get("of"))}</div>'
        if s
        else ""
    )
    return (
        f'<tr data-run="{_e(run)}" data-notebook="{_e(label)}" data-status="{_e(record.status)}">'
        f'<td><span class="st st-{_e(record.status)}">{_e(record.status)}</span></td>'
        f'<td><a class="run" href="{link}">{_e(run)}</a>{sweep}</td>'
        f"<td>{_e(record.notebook)}</td><td>{_e(record.trigger)}</td>"
        f'<td class="mono">{_e(format.commit(record.commit))}</td>'
        f"<td>{_e(format.started(record))}</td>"
        f'<td data-sort="{record.duration_s or 0}">{_e(format.duration(record.duration_s))}</td>'
        f'<td class="kv">{params}</td><td class="kv">{metrics}</td><td>{thumbs}</td></tr>'
    )


def _charts(stem: str, runs: list[RunRecord]) -> str:
    """One SVG line chart per metric across ``runs`` (oldest first)."""
    keys = sorted({k for r in runs for k in r.metrics})
    out = []
    w, h, pad = 260, 120, 24
    for key in keys:
        points = [(r, r.metrics[key]) for r in runs if key in r.metrics][-CHART_POINTS:]
        values = [v for _, v in points]
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        n = len(points)

        def xy(i: int, v: float, n: int = n, lo: float = lo, span: float = span) -> tuple[float, float]:
            x = pad + (w - 2 * pad) * (i / (n - 1) if n > 1 else 0.5)
            return round(x, 1), round(h - pad - (h - 2 * pad) * (v - lo) / span, 1)

        coords = [xy(i, v) for i, (_, v) in enumerate(points)]
        line = " ".join(f"{x},{y}" for x, y in coords)
        dots = "".join(
            f'<a href="{quote(r.id)}/"><circle cx="{x}" cy="{y}" r="3"><title>{_e(r.id)}: {_e(format.value(v, width=None))}</title></circle></a>'
            for (x, y), (r, v) in zip(coords, points, strict=True)
        )
        out.append(
            f'<figure class="chart"><figcaption>{_e(key)}</figcaption>'
            f'<svg class="chart" data-notebook="{_e(stem)}" data-metric="{_e(key)}" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" aria-label="{_e(key)} across {n} runs">'
            f'<text x="2" y="{pad - 8}" class="ax">{_e(format.value(hi, width=None))}</text>'
            f'<text x="2" y="{h - 8}" class="ax">{_e(format.value(lo, width=None))}</text>'
            f'<polyline points="{line}"/>{dots}</svg></figure>'
        )
    return "".join(out)


def _curves(results: Path, stem: str, runs: list[RunRecord]) -> str:
    """One SVG per metric logged by step: the curves of the notebook's latest runs that have one
    (``CURVE_RUNS``), over each other, one colour per run (oldest first), on one scale; when the
    newest of them is a sweep's, that sweep's runs (``SWEEP_RUNS`` at most)."""
    from ..results.metrics import read_steps

    curved = [r for r in runs if r.curves]
    if not curved:
        return ""
    sweep = (curved[-1].sweep or {}).get("id")
    latest = [r for r in curved if (r.sweep or {}).get("id") == sweep][:SWEEP_RUNS] if sweep else curved[-CURVE_RUNS:]
    whose = f", sweep {sweep}" if sweep else ""
    read = {r.id: read_steps(results / r.id) for r in latest}
    out = []
    w, h, pad = 320, 150, 24
    for key in sorted({k for r in latest for k in r.curves}):
        drawn = [
            (r, read[r.id][key][:: max(1, len(read[r.id][key]) // CURVE_POINTS)]) for r in latest if read[r.id].get(key)
        ]
        if not drawn:
            continue
        steps = [s for _, pts in drawn for s, _ in pts]
        values = [v for _, pts in drawn for _, v in pts]
        s_lo, s_span = min(steps), (max(steps) - min(steps)) or 1
        v_lo, v_span = min(values), (max(values) - min(values)) or 1.0
        lines = []
        for i, (r, pts) in enumerate(drawn):
            coords = " ".join(
                f"{round(pad + (w - 2 * pad) * (s - s_lo) / s_span, 1)},{round(h - pad - (h - 2 * pad) * (v - v_lo) / v_span, 1)}"
                for s, v in pts
            )
            colour = COLOURS[i % len(COLOURS)]
            lines.append(
                f'<polyline class="curve" data-run="{_e(r.id)}" points="{coords}" style="stroke:{colour}">'
                f"<title>{_e(r.id)}: {_e(key)} {_e(format.value(pts[-1][1], width=None))} at step {pts[-1][0]}</title></polyline>"
            )
        out.append(
            f'<figure class="chart"><figcaption>{_e(key)} by step{_e(whose)}</figcaption>'
            f'<svg class="curves" data-notebook="{_e(stem)}" data-metric="{_e(key)}" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" aria-label="{_e(key)} by step, {len(drawn)} runs">'
            f'<text x="2" y="{pad - 8}" class="ax">{_e(format.value(v_lo + v_span, width=None))}</text>'
            f'<text x="2" y="{h - 8}" class="ax">{_e(format.value(v_lo, width=None))}</text>'
            f'<text x="{w - pad}" y="{h - 8}" class="ax" text-anchor="end">step {max(steps)}</text>'
            f"{''.join(lines)}</svg></figure>"
        )
    return "".join(out)


def build_page(project: str, records: list[RunRecord], rendered: set[str], results: Path | None = None) -> str:
    """The whole page for ``records`` (newest first), as text."""
    labels = notebook_labels({r.notebook for r in records})  # notebooks are told apart by path
    by_notebook: dict[str, list[RunRecord]] = {}
    for record in reversed(records):
        by_notebook.setdefault(labels[record.notebook], []).append(record)
    statuses = sorted({r.status for r in records})
    sections = []
    for stem in sorted(by_notebook):
        runs = by_notebook[stem]
        charts = _charts(stem, runs) + (_curves(results, stem, runs) if results is not None else "")
        sections.append(
            f'<section class="nb" data-notebook="{_e(stem)}"><h3>{_e(stem)} '
            f"<small>{len(runs)} run{'s' if len(runs) != 1 else ''}</small></h3>"
            + (charts or '<p class="none">no metrics yet: <code>log_metrics(name=value)</code> in the notebook</p>')
            + "</section>"
        )
    options = "".join(f'<option value="{_e(s)}">{_e(s)}</option>' for s in sorted(by_notebook))
    status_options = "".join(f'<option value="{_e(s)}">{_e(s)}</option>' for s in statuses)
    rows = "".join(_row(r, rendered, labels[r.notebook]) for r in records)
    made = time.strftime("%Y-%m-%d %H:%M:%S")
    return _PAGE.format(
        title=_e(f"{project}: runs"),
        project=_e(project),
        made=made,
        count=len(records),
        options=options,
        status_options=status_options,
        rows=rows,
        sections="".join(sections),
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="mm4watch report">
<title>{title}</title>
<style>
body {{ font: 14px/1.4 -apple-system, system-ui, sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.4em; margin: 0 0 .2em; }} h3 small {{ color: #777; font-weight: normal; }}
.meta {{ color: #666; margin-bottom: 1em; }}
.filters {{ margin: .5em 0 1em; display: flex; gap: 1em; flex-wrap: wrap; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; vertical-align: top; }}
th {{ cursor: pointer; user-select: none; background: #fafafa; position: sticky; top: 0; }}
th.asc::after {{ content: " \\25B2"; }} th.desc::after {{ content: " \\25BC"; }}
.mono, .run {{ font-family: ui-monospace, Menlo, monospace; font-size: 12px; }}
.kv {{ font-size: 12px; white-space: nowrap; }}
.st {{ padding: 1px 6px; border-radius: 8px; color: #fff; font-size: 12px; }}
.st-succeeded {{ background: #2e7d32; }} .st-failed, .st-timeout {{ background: #c62828; }}
.st-cancelled, .st-interrupted {{ background: #ef6c00; }} .st-running {{ background: #00838f; }}
.st-queued {{ background: #1565c0; }}
img.thumb {{ height: 48px; max-width: 96px; border: 1px solid #ddd; margin-right: 4px; background: #fff; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1.5em; }}
section.nb {{ margin-bottom: 1em; }}
figure.chart {{ display: inline-block; margin: 0 1em 1em 0; }}
figure.chart figcaption {{ font-weight: 600; }}
svg.chart {{ background: #fcfcfc; border: 1px solid #eee; }}
svg.chart polyline {{ fill: none; stroke: #1e88e5; stroke-width: 1.5; }}
svg.chart circle {{ fill: #1e88e5; }}
svg.curves {{ background: #fcfcfc; border: 1px solid #eee; }} svg.curves polyline {{ fill: none; stroke-width: 1.5; }}
svg.curves .ax {{ font-size: 10px; fill: #888; }} .sw {{ font-size: 11px; color: #777; }} svg.chart .ax {{ font-size: 10px; fill: #888; }}
.none {{ color: #888; margin: 0; }} section.nb h3 {{ margin: .6em 0 .3em; }}
</style></head>
<body>
<h1>{project}</h1>
<div class="meta">{count} runs &middot; made {made} by <code>mm4watch report</code></div>
<h2>Runs</h2>
<div class="filters">
<label>notebook <select id="f-notebook"><option value="">all</option>{options}</select></label>
<label>status <select id="f-status"><option value="">all</option>{status_options}</select></label>
<label>search <input id="f-text" type="search" placeholder="run, parameter, metric"></label>
<span id="shown"></span>
</div>
<table id="runs"><thead><tr>
<th>status</th><th>run</th><th>notebook</th><th>trigger</th><th>commit</th><th>started</th><th>duration</th>
<th>parameters</th><th>metrics</th><th>images</th>
</tr></thead><tbody>{rows}</tbody></table>
<h2>Metrics by notebook</h2>
<div id="charts">{sections}</div>
<script>
(function () {{
  var table = document.getElementById("runs"), body = table.tBodies[0];
  var fNb = document.getElementById("f-notebook"), fSt = document.getElementById("f-status");
  var fText = document.getElementById("f-text"), shown = document.getElementById("shown");
  function filter() {{
    var nb = fNb.value, st = fSt.value, text = fText.value.toLowerCase(), n = 0;
    for (var i = 0; i < body.rows.length; i++) {{
      var r = body.rows[i];
      var ok = (!nb || r.dataset.notebook === nb) && (!st || r.dataset.status === st) &&
               (!text || r.textContent.toLowerCase().indexOf(text) >= 0);
      r.style.display = ok ? "" : "none"; if (ok) n++;
    }}
    shown.textContent = n + " of " + body.rows.length + " runs";
    var sections = document.querySelectorAll("section.nb");
    for (var j = 0; j < sections.length; j++)
      sections[j].style.display = (!nb || sections[j].dataset.notebook === nb) ? "" : "none";
  }}
  function key(cell) {{
    var v = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    var n = parseFloat(v); return isNaN(n) || !/^[-+0-9.eE]+$/.test(v) ? v.toLowerCase() : n;
  }}
  var heads = table.tHead.rows[0].cells, sorted = "";
  function sortBy(col, desc) {{
    for (var k = 0; k < heads.length; k++) heads[k].classList.remove("asc", "desc");
    heads[col].classList.add(desc ? "desc" : "asc");
    sorted = (desc ? "-" : "") + heads[col].textContent;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {{
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (typeof x !== typeof y) {{ x = String(x); y = String(y); }}
      return (x < y ? -1 : x > y ? 1 : 0) * (desc ? -1 : 1);
    }});
    rows.forEach(function (r) {{ body.appendChild(r); }});
  }}
  for (var c = 0; c < heads.length; c++) (function (col) {{
    heads[col].addEventListener("click", function () {{
      sortBy(col, !this.classList.contains("desc")); save();
    }});
  }})(c);
  // the filters and the order live in the address (#notebook=a&status=failed&sort=-duration): a view can be bookmarked
  function save() {{
    var parts = [];
    if (fNb.value) parts.push("notebook=" + encodeURIComponent(fNb.value));
    if (fSt.value) parts.push("status=" + encodeURIComponent(fSt.value));
    if (fText.value) parts.push("q=" + encodeURIComponent(fText.value));
    if (sorted) parts.push("sort=" + encodeURIComponent(sorted));
    history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname);
  }}
  var wanted = {{}};
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {{
    var i = kv.indexOf("="), value;
    if (i <= 0) return;
    try {{ value = decodeURIComponent(kv.slice(i + 1)); }} catch (e) {{ return; }}  // a malformed address
    wanted[kv.slice(0, i)] = value;
  }});
  fNb.value = wanted.notebook || ""; fSt.value = wanted.status || ""; fText.value = wanted.q || "";
  if (wanted.sort) {{
    var name = wanted.sort.replace(/^-/, "");
    for (var h = 0; h < heads.length; h++)
      if (heads[h].textContent === name) sortBy(h, wanted.sort.charAt(0) === "-");
  }}
  fNb.addEventListener("change", function () {{ filter(); save(); }});
  fSt.addEventListener("change", function () {{ filter(); save(); }});
  fText.addEventListener("input", function () {{ filter(); save(); }}); filter();
}})();
</script>
</body></html>
"""
