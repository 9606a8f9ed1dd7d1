"""The Lab extension as a person sees it: the wheel built from the project's own files (node from
PyPI, the TypeScript compiled, the prebuilt extension inside), a real ``jupyter lab`` that loads it,
a real daemon, and Debian's chromium driven by playwright. Screenshots are kept in
``tests/artefacts/lab/`` (the last run's)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from conftest import code, git, load_record, mm4, run_dirs, wait_for, write_notebook
from support import chromium, lab_settings

REPO = Path(__file__).resolve().parent.parent
ARTEFACTS = REPO / "tests" / "artefacts" / "lab"
TRAIN = (
    "# mm4: remote\nimport time\nfrom mm4watch import log_metrics\n"
    "for i in range(nap):\n    print('step', i, flush=True)\n    time.sleep(1)\n"
    "log_metrics(acc=0.5 + n / 10)\nprint('trained', n)"
)


@pytest.fixture(scope="session")
def lab_extension(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built as a fresh machine builds it from the project's files (``pip wheel``: hatchling,
    hatch-jupyter-builder, node from PyPI, ``jlpm install`` from npm), unpacked: a folder to put on
    JUPYTER_PATH, whose ``labextensions/mm4watch`` is what the wheel installs."""
    given = os.environ.get("MM4_LAB_WHEEL")  # a wheel built already (working on the tests themselves)
    if given and not os.environ.get("CI"):
        wheel = Path(given)
    else:
        source = tmp_path_factory.mktemp("source")
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                                capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
        for name in filter(None, listed):
            if (REPO / name).is_file():
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, source / name)
        out = tmp_path_factory.mktemp("wheel")
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(source)],
                              capture_output=True, text=True, timeout=1200)  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        print(f"the wheel built in {time.monotonic() - t0:.0f} s")
        (wheel,) = out.glob("mm4watch-*.whl")
    unpacked = tmp_path_factory.mktemp("jupyter")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        prefix = next(n for n in names if n.endswith(".data/data/share/jupyter/labextensions/mm4watch/package.json"))
        prefix = prefix[: -len("labextensions/mm4watch/package.json")]
        assert any(n.startswith(prefix + "labextensions/mm4watch/static/remoteEntry.") for n in names), names
        assert prefix.replace("share/jupyter/", "etc/jupyter/jupyter_server_config.d/mm4watch.json") in names
        for name in names:
            if name.startswith(prefix) and not name.endswith("/"):
                target = unpacked / name[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(name))
    return unpacked


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A real ``jupyter lab`` in ``root`` with the built extension first on its path."""

    def __init__(self, root: Path, jupyter: Path, config: Path, log: Path, *, with_extension: bool = True) -> None:
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "JUPYTER_PATH": str(jupyter), "JUPYTER_CONFIG_DIR": str(config)}
        lab_settings(config, with_extension)
        self.out = open(log, "wb")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", f"--port={self.port}",
             "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root}"],
            cwd=root, env=env, stdout=self.out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.log = log

        def up() -> bool:
            assert self.process.poll() is None, log.read_text()[-3000:]
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(up, 120, "jupyter lab to listen")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.out.close()


@pytest.fixture
def lab_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    (root / "mm4.toml").write_text('[run]\nexecutor = "local"\ntimeout = "5m"\n\n[daemon]\ndebounce = "0.5s"\n')
    write_notebook(root / "notebooks" / "train.ipynb", code("n = 1\nnap = 2", tags=["parameters"]), code(TRAIN))
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text("results/\n.mm4/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


@pytest.fixture
def page_of(lab_extension: Path, tmp_path: Path) -> Iterator:
    """``page_of(root)``: chromium on a Lab serving ``root`` (one Lab, one page per test)."""
    from playwright.sync_api import sync_playwright

    labs: list[Lab] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])

        def open_lab(root: Path, notebook: str = "notebooks/train.ipynb"):
            lab = Lab(root, lab_extension, tmp_path / f"jupyter-config-{len(labs)}", tmp_path / f"lab-{len(labs)}.log")
            labs.append(lab)
            page = browser.new_page(viewport={"width": 1500, "height": 850})
            page.goto(f"{lab.url}/lab/tree/{notebook}")
            page.wait_for_selector("[data-mm4=status]", timeout=90_000)
            # every change of the status item, with the wall clock's time: what the test reads back
            page.evaluate("""() => {
                const item = document.querySelector('[data-mm4=status]');
                window.mm4Seen = [[Date.now(), item.textContent]];
                new MutationObserver(() => window.mm4Seen.push([Date.now(), item.textContent]))
                    .observe(item, {childList: true, characterData: true, subtree: true});
            }""")
            return page

        try:
            yield open_lab
        finally:
            browser.close()
            for lab in labs:
                lab.stop()


def _shot(page, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def _item(page) -> str:
    return page.inner_text("[data-mm4=status]")


def _wait_item(page, *words: str, timeout: float = 60) -> str:
    return wait_for(lambda: next((t for t in [_item(page)] if any(w in t for w in words)), None), timeout,
                    f"the status item to say one of {words}")  # fmt: skip


def test_a_save_in_lab_shows_the_run_live_then_its_result_and_the_panel_runs_and_cancels(lab_project, page_of):
    assert mm4(["start"], cwd=lab_project).returncode == 0
    try:
        page = page_of(lab_project)
        _wait_item(page, "no runs yet")
        # the person edits the parameters cell and saves (Ctrl+S): the daemon queues a run
        page.click(".jp-Cell:first-child .cm-content")
        page.keyboard.press("Control+End")
        page.keyboard.type("\nseed = 0")
        page.keyboard.press("Control+s")
        _wait_item(page, "queued", "cell", "starting", "preparing", "running", timeout=60)
        entries = wait_for(lambda: json.loads(mm4(["queue", "--all", "--json"], cwd=lab_project).stdout), 30, "entry")
        queued_at = datetime.fromisoformat(entries[0]["queued_at"]).timestamp()  # to the millisecond
        seen = page.evaluate("window.mm4Seen")
        first = next(t for t, text in seen if "no runs yet" not in text and t / 1000 >= queued_at - 0.05)
        shown_after = first / 1000 - queued_at
        print(f"the status item changed {shown_after * 1000:.0f} ms after the daemon queued the save")
        assert shown_after <= 2.0, seen
        _shot(page, "running")
        _wait_item(page, "succeeded", timeout=180)
        toast = page.wait_for_selector(".Toastify__toast:has-text('succeeded')", timeout=20_000)
        assert "notebooks/train.ipynb" in toast.inner_text()
        page.wait_for_timeout(800)  # the toast's entrance
        _shot(page, "notification")

        page.click("[data-mm4=status]")  # the item opens the panel: the run, with its metric
        row = page.wait_for_selector("tr[data-run][data-status=succeeded]", timeout=20_000)
        assert row.query_selector("[data-col='metric:acc']").inner_text() == "0.6000"
        assert row.query_selector("[data-col='field:trigger']").inner_text() == "save"

        # Run on the Mini with parameters, from the panel; then cancel it there
        page.click("[data-mm4=run]")
        area = page.wait_for_selector(".mm4-RunForm textarea")
        assert "n = 1" in area.input_value() and "nap = 2" in area.input_value()  # from the parameters cell
        area.fill("n = 3\nnap = 120  # long enough to cancel")
        page.click(".jp-Dialog-footer button.jp-mod-accept")
        running = page.wait_for_selector("tr[data-run][data-status=running]", timeout=120_000)
        run_id = running.get_attribute("data-run")
        running.query_selector("[data-act=log]").click()
        wait_for(lambda: "step 1" in page.inner_text("[data-mm4=text]"), 60, "the live log")
        assert "following" in page.inner_text(".mm4-Panel-detailHead")
        _shot(page, "panel")
        page.click(f"tr[data-run='{run_id}'] [data-act=cancel]")
        page.wait_for_selector(f"tr[data-run='{run_id}'][data-status=cancelled]", timeout=120_000)
        record = load_record(lab_project / "results" / run_id)
        assert record["status"] == "cancelled" and record["parameters"] == {"n": 3, "nap": 120}
        assert len(run_dirs(lab_project)) == 2

        # compare the two (the diff view), then open the first one's executed notebook, read-only
        for i in range(2):
            page.locator("tr[data-run] input[type=checkbox]").nth(i).check()
        page.click("[data-mm4=compare]")
        wait_for(lambda: "nap" in page.inner_text("[data-mm4=text]"), 60, "the comparison")
        assert "parameters" in page.inner_text("[data-mm4=text]")
        _shot(page, "compare")
        page.click("tr[data-run][data-status=succeeded] [data-act=open]")
        page.wait_for_selector(".lm-TabBar-tab:has-text('executed.ipynb')", timeout=30_000)
        # the executed notebook is the one shown now: typing into its cells changes nothing (a result is read only)
        shown = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell:first-child .cm-content"
        wait_for(lambda: "n = 1" in page.inner_text(shown), 30, "the executed notebook")
        page.wait_for_timeout(1000)  # its cells made read-only once its file is loaded
        page.click(shown)
        page.keyboard.type("zzz")
        page.wait_for_timeout(300)
        assert "zzz" not in page.inner_text(shown)
    finally:
        mm4(["stop"], cwd=lab_project)


def test_honest_states_a_broken_toml_a_stopped_daemon_and_no_project(lab_project, page_of, tmp_path):
    toml = lab_project / "mm4.toml"
    good = toml.read_text()
    toml.write_text(good + "\n[run]\ntimeout = 5\n")  # a table twice: mm4.toml does not load
    page = page_of(lab_project)
    _wait_item(page, "mm4.toml broken")
    assert "mm4.toml" in page.get_attribute("[data-mm4=status]", "title")
    toml.write_text(good)  # fixed: the page says so by itself (the watcher saw mm4.toml move)
    _wait_item(page, "daemon off", timeout=30)
    page.click("[data-mm4=status]")
    start = page.wait_for_selector("[data-mm4=start]:visible")
    _shot(page, "daemon-off")
    try:
        start.click()
        _wait_item(page, "no runs yet", timeout=60)  # the daemon runs: "daemon off" is gone
        assert json.loads((lab_project / ".mm4" / "daemon.json").read_text())["pid"] > 0
        # an untagged notebook says so; "Tag for remote runs" from the palette, a save, and it runs
        write_notebook(lab_project / "notebooks" / "plain.ipynb", code("print('plain')"))
        page = page_of(lab_project, "notebooks/plain.ipynb")
        _wait_item(page, "not tagged")
        page.click(".jp-Cell:first-child .cm-content")
        page.keyboard.press("Escape")
        page.click(".lm-MenuBar-itemLabel:text-is('View')")  # the palette, as the menu opens it
        page.click(".lm-Menu-itemLabel:text-is('Activate Command Palette')")
        page.wait_for_selector(".lm-CommandPalette-input", state="visible", timeout=30_000).fill("Tag for remote")
        page.click(".lm-CommandPalette-item:has-text('Tag for remote runs')")
        wait_for(lambda: "# mm4: remote" in page.inner_text(".jp-Cell:first-child .cm-content"), 30, "the tag")
        page.keyboard.press("Control+s")
        _wait_item(page, "succeeded", timeout=120)
        (run,) = [d for d in run_dirs(lab_project) if load_record(d)["notebook"] == "notebooks/plain.ipynb"]
        assert load_record(run)["trigger"] == "save"
    finally:
        mm4(["stop"], cwd=lab_project)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_notebook(elsewhere / "a.ipynb", code("print(1)"))
    page = page_of(elsewhere, "a.ipynb")
    wait_for(lambda: "not an mm4watch project" in (page.get_attribute("[data-mm4=status]", "title") or ""), 30,
             "the item to say there is no project")  # fmt: skip
