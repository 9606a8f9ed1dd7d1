"""The far side (what runs on the Mini or in a container) keeps to Python 3.9 and needs nothing else of mm4watch.

A fresh Mac's /usr/bin/python3 is 3.9. The native executor's tests run it there for
real (the Mac-like Mini, tests/rig/mac.sh); these checks are quick and run everywhere.
"""

import shutil
import subprocess
import sys
import textwrap
from datetime import datetime

from test_store import make_run

from mm4watch.executors.far_side import FAR_SIDE, FAR_SIDE_PYTHON, runner_digest, runner_files


def test_the_far_side_keeps_to_python_3_9():
    package, files = runner_files()
    assert [p.relative_to(package).as_posix() for p in files] == list(FAR_SIDE) and all(p.is_file() for p in files)
    target = ".".join(map(str, FAR_SIDE_PYTHON))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, vermin; sys.argv[0] = 'vermin'; sys.exit(vermin.main())",
            f"-t={target}-",
            "--no-tips",
            "--violations",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_far_side_alone_runs_the_helpers(tmp_path):
    """Only the shipped files, no site-packages (no mm4watch installed, no config.py, no tomllib use):
    the runner imports, and the helpers find what the run was told."""
    package, files = runner_files()
    lib = tmp_path / "lib" / "mm4watch"
    lib.mkdir(parents=True)
    for path in files:
        copy = lib / path.relative_to(package)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, copy)
    results = tmp_path / "seen" / "results"
    make_run(results, "10_clean", datetime(2026, 11, 28, 13, 5, 9))
    newest = make_run(results, "10_clean", datetime(2026, 11, 29, 8, 0, 0))
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(lib.parent)!r})
        import mm4watch.far.runner
        from mm4watch import latest_run, log_metrics, output_dir, results_dir, runs
        assert mm4watch.__file__.startswith({str(lib)!r}), mm4watch.__file__
        assert "mm4watch.core.config" not in sys.modules
        print(latest_run("10_clean").name, len(runs("10_clean")), results_dir(), output_dir())
        print(log_metrics(acc=0.5))
        assert "mm4watch.core.config" not in sys.modules
    """)
    env = {
        "PATH": "/usr/bin:/bin",
        "MM4_RUN_ID": "r1",
        "MM4_OUTPUT_DIR": str(out),
        "MM4_RESULTS_DIR": str(results),
        "MM4_PROJECT_DIR": str(tmp_path / "seen"),
    }
    done = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == f"{newest.name} 2 {results} {out}"
    assert second == "{'acc': 0.5}" and (out / "metrics.json").exists()


def test_warm_containers_are_keyed_on_the_far_side_only(tmp_path):
    package, files = runner_files()
    assert package / "cli.py" not in files and package / "config.py" not in files
    assert len(runner_digest()) == 64
