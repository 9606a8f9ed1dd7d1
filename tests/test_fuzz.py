"""Generated inputs (hypothesis): broken records, and whole runs of odd notebooks.

1. Records: a results folder of one good run and generated damage (any JSON where a
   record should be, any value in any field, nested junk); history, the report,
   show, diff and the helpers go on with the good run and never raise.
2. Runs: notebook names, tag lines, parameters, metrics files and output trees
   (FIFOs, sockets, links, deep nesting, huge numbers, control characters), run
   for real on the local executor: every run ends with a final record and no
   command exits 3. Bounded to about a minute.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import load_record, run_dirs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import code, mm4, notebook_json
from test_store import make_run

from mm4watch.results.records import FINAL_STATUSES, RECORD_NAME, RunRecord

FIELDS = [f for f in RunRecord.__dataclass_fields__]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
DAMAGE = st.one_of(
    JSON.map(lambda value: ("replace", value)),  # any JSON where a record should be
    st.tuples(st.sampled_from(FIELDS), JSON).map(lambda fv: ("field", fv)),  # one field, any value
    st.tuples(st.sampled_from(["error", "executor", "commit", "source", "inputs", "parameters"]), JSON).map(
        lambda fv: ("nested", fv)
    ),  # junk one level down, where readers look
    st.integers(min_value=0, max_value=200).map(lambda n: ("cut", n)),  # written half
)


def _damage(run_dir: Path, how: tuple[str, object]) -> None:
    path = run_dir / RECORD_NAME
    record = json.loads(path.read_text())
    kind, what = how
    if kind == "replace":
        text = json.dumps(what, allow_nan=True)
    elif kind == "field":
        name, value = what  # type: ignore[misc]
        text = json.dumps({**record, name: value}, allow_nan=True)
    elif kind == "nested":
        name, value = what  # type: ignore[misc]
        text = json.dumps({**record, name: {"cell": value, "sha": value, "name": value, "x": value}}, allow_nan=True)
    else:
        text = path.read_text()[: int(what)]  # type: ignore[call-overload]
    path.write_text(text)


@pytest.fixture(scope="module")
def results_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzzrecords")
    (root / "mm4.toml").write_text('[run]\nexecutor = "local"\n')
    return root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=st.lists(DAMAGE, min_size=1, max_size=4))
def test_broken_records_never_stop_the_readers(results_project: Path, damage: list) -> None:
    from mm4watch import cli
    from mm4watch.core import config
    from mm4watch.far import helpers
    from mm4watch.results import compare
    from mm4watch.results.store import History
    from mm4watch.views import report

    results = results_project / "results"
    shutil.rmtree(results, ignore_errors=True)
    shutil.rmtree(results_project / ".mm4", ignore_errors=True)
    good = make_run(results, "nb", datetime(2026, 11, 1, 9, 0, 0), metrics={"acc": 0.5}, parameters={"n": 1})
    for i, how in enumerate(damage):
        _damage(make_run(results, "nb", datetime(2026, 11, 2, 9, 0, i)), how)
    cfg = config.load(results_project)
    history = History(cfg.results_dir, cfg.state_dir)
    with contextlib.redirect_stderr(io.StringIO()):
        listed = history.query()
        assert good.name in [r.id for r in listed]
        page = report.build_page("p", listed, set())
        assert good.name in page
        for record in listed:
            compare.compare(results_project, listed[-1], record, results / listed[-1].id, results / record.id)
        assert helpers.latest_run("nb", project=results_project).parent == results
        assert len(helpers.runs("nb", project=results_project, status=None)) == len(listed)
        old = os.getcwd()
        os.chdir(results_project)
        try:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                assert cli.main(["history"]) == 0
                assert cli.main(["show", good.name]) == 0
                for record in listed:
                    assert cli.main(["show", record.id]) == 0
                    assert cli.main(["diff", good.name, record.id]) == 0
        finally:
            os.chdir(old)


# -- whole runs ---------------------------------------------------------------------------------

NAMES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1, max_size=12
).filter(lambda s: s not in (".", "..") and not s.startswith(".") and len(s.encode()) < 100)
TAG_OPTIONS = st.lists(
    st.sampled_from(["timeout=30s", "timeout=0", "timeout=9999999d", "executor=local", "executor=nope", "needs=",
                     "needs=missing", "retries=1", "bogus", "=", "timeout=1h30", "x=y"]),
    max_size=3,
)  # fmt: skip
PARAMS = st.dictionaries(
    st.sampled_from(["n", "class", "lambda", "x_1", "é", "a b"]),
    st.one_of(st.integers(min_value=-(10**30), max_value=10**30), st.text(max_size=8), st.just("[/]")),
    max_size=2,
)
TREE = st.lists(
    st.sampled_from(["fifo", "socket", "link", "dangling", "deep", "huge_metric", "nan_metric", "control_name",
                     "nested_metrics", "empty_dir", "big_name"]),
    max_size=4, unique=True,
)  # fmt: skip

MAKE_TREE = """
import os, pathlib, socket, json
out = pathlib.Path(os.environ['MM4_OUTPUT_DIR'])
for kind in {kinds!r}:
    if kind == 'fifo': os.mkfifo(out / 'p.png')
    if kind == 'socket': s = socket.socket(socket.AF_UNIX); s.bind(str(out / 's'))
    if kind == 'link': (out / 'l').symlink_to('/etc/hostname')
    if kind == 'dangling': (out / 'd').symlink_to('/nowhere')
    if kind == 'deep':
        p = out
        for i in range(60): p = p / 'd'
        p.mkdir(parents=True); (p / 'f.txt').write_text('deep')
    if kind == 'huge_metric': (out / 'metrics.json').write_text('{{"h": 1' + '0' * 400 + '}}')
    if kind == 'nan_metric': (out / 'metrics.json').write_text('{{"n": NaN, "i": Infinity}}')
    if kind == 'nested_metrics': (out / 'metrics.json').write_text('{{"a": ' * 5000 + '1' + '}}' * 5000)
    if kind == 'control_name': (out / 'x\\x1b]0;t\\x07.txt').write_text('c')
    if kind == 'empty_dir': (out / 'empty').mkdir()
    if kind == 'big_name': (out / ('n' * 250)).write_text('b')
"""


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES, options=TAG_OPTIONS, parameters=PARAMS, tree=TREE)
def test_every_run_ends_with_a_final_record(tmp_path_factory, name, options, parameters, tree) -> None:
    root = tmp_path_factory.mktemp("fuzzrun")
    (root / "notebooks").mkdir()
    (root / "mm4.toml").write_text('[run]\nexecutor = "local"\ntimeout = "1m"\n')
    cells = [
        code("n = 0\nx_1 = 0", tags=["parameters"]),
        code(f"# mm4: remote {' '.join(options)}".rstrip() + "\n" + MAKE_TREE.format(kinds=tree)),
    ]
    path = root / "notebooks" / f"{name}.ipynb"
    try:
        path.write_text(notebook_json(*cells))
    except (OSError, UnicodeEncodeError):
        return  # a name this file system refuses: nothing to run
    args = ["run", f"notebooks/{name}.ipynb"]
    for key, value in parameters.items():
        args += ["-p", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    if any("\x00" in arg for arg in args):
        return  # no command line carries a NUL byte: nothing a user could type
    t0 = time.monotonic()
    done = mm4(args, cwd=root, timeout=120)
    assert done.returncode != 3, done.stderr
    assert done.returncode in (0, 1, 2), (done.returncode, done.stderr)
    for run_dir in run_dirs(root):
        record = load_record(run_dir)
        assert record["status"] in FINAL_STATUSES, record
    for command in (["history"], ["status"], ["report"], ["queue", "--all"]):
        out = mm4(command, cwd=root, timeout=120)
        assert out.returncode != 3, (command, out.stderr)
        assert "\x1b]" not in out.stdout
    assert time.monotonic() - t0 < 100
