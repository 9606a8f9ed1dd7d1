import json
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest
from conftest import REPO, mm4

from mm4watch.cli import COMMANDS, build_parser
from mm4watch.core.errors import EXIT_TABLE
from mm4watch.results.records import RunRecord, write_record
from mm4watch.results.store import create_run_dir


def test_help_starts_fast_and_prints_exit_codes():
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "mm4watch", "--help"], capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        assert done.returncode == 0
    assert min(times) < 0.5, times
    for code, meaning in EXIT_TABLE:
        assert re.search(rf"^\s+{code}\s+{re.escape(meaning)}$", done.stdout, re.M)


def test_help_does_not_import_heavy_modules():
    probe = "import sys; from mm4watch import cli; cli.build_parser(); print(sorted(m for m in ('docker','papermill','git','rich','nbformat','watchdog') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_each_command_declares_its_own_options_and_only_the_one_run_is_loaded():
    """A command's options are in its module (``add_options``), not in the CLI; building the parser for
    one command imports that command's module only, and for ``--help`` none."""
    import ast

    cli_source = (REPO / "mm4watch" / "cli.py").read_text()
    assert "add_argument(" not in cli_source.replace('parser.add_argument("--version"', "")
    declared = {
        path.stem for path in (REPO / "mm4watch" / "commands").glob("*.py")
        if any(isinstance(n, ast.FunctionDef) and n.name == "add_options" for n in ast.parse(path.read_text()).body)
    }  # fmt: skip
    assert {"run", "history", "queue", "pool", "_exec"} <= declared
    probe = (
        "import sys; from mm4watch import cli; cli.build_parser({}); "
        "print(sorted(m for m in sys.modules if m.startswith('mm4watch.commands.')))"
    )
    for command, loaded in ((None, "[]"), ('"history"', "['mm4watch.commands.history']")):
        done = subprocess.run([sys.executable, "-c", probe.format(command or "")], capture_output=True, text=True)
        assert done.stdout.strip() == loaded, done.stderr
    parser = build_parser("history")
    args = parser.parse_args(["history", "--sort=-acc", "--limit", "3"])
    assert (args.sort, args.limit) == ("-acc", 3)
    with pytest.raises(SystemExit):
        parser.parse_args(["history", "--no-such-option"])


def test_every_command_has_help_and_is_documented():
    readme = (REPO / "README.md").read_text()
    parser = build_parser(every=True)
    sub = next(a for a in parser._actions if a.dest == "command")
    public = {name: p for name, p in sub.choices.items() if not name.startswith("_")}
    assert set(public) == set(COMMANDS)
    for name, subparser in public.items():
        assert subparser.format_help().strip()
        assert f"mm4watch {name}" in readme, f"README.md does not document `mm4watch {name}`"


def test_readme_exit_code_table_matches():
    readme = (REPO / "README.md").read_text()
    for code, meaning in EXIT_TABLE:
        assert f"| {code} | {meaning} |" in readme


def make_runs(project, n):
    when = datetime(2026, 1, 1, 9, 0, 0)
    for i in range(n):
        run_id, run_dir = create_run_dir(project / "results", f"nb{i % 3}", when + timedelta(minutes=i))
        write_record(
            run_dir,
            RunRecord(
                id=run_id,
                notebook=f"notebooks/nb{i % 3}.ipynb",
                status="failed" if i == 4 else "succeeded",
                trigger="manual",
                queued_at=(when + timedelta(minutes=i)).astimezone().isoformat(),
                started_at=(when + timedelta(minutes=i)).astimezone().isoformat(),
                duration_s=1.5 * i,
                commit={"sha": "0123456789abcdef", "branch": "main", "dirty": i % 2 == 1},
                executor={"name": "local", "type": "local"},
            ),
        )


def test_history_table_and_json(project):
    make_runs(project, 6)
    done = mm4(["history"], cwd=project)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split() == ["run", "notebook", "status", "trigger", "commit", "started", "duration", "executor"]
    assert lines[1].split()[0] == "nb2_20260101_090500"  # newest first
    assert "01234567*" in lines[1] and "01234567 " in lines[2]
    data = json.loads(mm4(["history", "--json", "--notebook", "nb1"], cwd=project).stdout)
    assert [r["id"] for r in data] == ["nb1_20260101_090400", "nb1_20260101_090100"]
    assert all(r["schema"] == 1 for r in data)
    failed = json.loads(mm4(["history", "--json", "--status", "failed"], cwd=project).stdout)
    assert [r["id"] for r in failed] == ["nb1_20260101_090400"]
    assert len(json.loads(mm4(["history", "--json", "--limit", "2"], cwd=project).stdout)) == 2


def test_history_rejects_bad_status(project):
    done = mm4(["history", "--status", "done"], cwd=project)
    assert done.returncode == 2 and "use one of" in done.stderr


def test_history_empty(project):
    done = mm4(["history"], cwd=project)
    assert done.returncode == 0 and "no runs" in done.stdout


def test_history_takes_notebook_names_as_show_does(project):
    make_runs(project, 3)
    run_id, run_dir = create_run_dir(project / "results", "23_train_model", datetime(2026, 1, 2))
    write_record(
        run_dir,
        RunRecord(
            id=run_id,
            notebook="notebooks/23_train_model.ipynb",
            status="succeeded",
            trigger="manual",
            queued_at=datetime(2026, 1, 2).astimezone().isoformat(),
        ),
    )
    by_prefix = json.loads(mm4(["history", "--json", "--notebook", "23_train"], cwd=project).stdout)
    assert [r["id"] for r in by_prefix] == [run_id]  # a unique prefix, as `show` takes it
    assert json.loads(mm4(["history", "--json", "--notebook", "nb"], cwd=project).stdout) == []  # not unique
    assert [
        r["id"] for r in json.loads(mm4(["history", "--json", "--notebook", "notebooks/nb1.ipynb"], cwd=project).stdout)
    ] == ["nb1_20260101_090100"]
    none = mm4(["history", "--notebook", "zz"], cwd=project)
    assert none.returncode == 0 and "no runs of zz (4 runs in all" in none.stdout


def test_show(project):
    make_runs(project, 3)
    done = mm4(["show", "nb0"], cwd=project)
    assert done.returncode == 0
    assert "run         nb0_20260101_090000" in done.stdout and "01234567 on main" in done.stdout
    labels = [line.split()[0] for line in done.stdout.splitlines() if line and not line.startswith(" ")]
    assert len(labels) == len(set(labels))  # each field once
    raw = json.loads(mm4(["show", "--json", "nb1_20260101_090100"], cwd=project).stdout)
    assert raw["id"] == "nb1_20260101_090100"
    missing = mm4(["show", "nope"], cwd=project)
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr and "Traceback" not in missing.stderr


def test_usage_errors(project):
    assert mm4([], cwd=project).returncode == 2
    done = mm4(["run", "notebooks/missing.ipynb"], cwd=project)
    assert done.returncode == 2 and "no such notebook" in done.stderr
    (project / "notebooks" / "x.ipynb").write_text("{}")
    done = mm4(["run", "notebooks/x.ipynb", "-p", "1x=2"], cwd=project)
    assert done.returncode == 2 and "KEY=VALUE" in done.stderr
    done = mm4(["run", "notebooks/x.ipynb", "--timeout", "forever"], cwd=project)
    assert done.returncode == 2 and "--timeout" in done.stderr


def test_parameters_are_parsed_as_papermill_parses_them(tmp_path):
    from mm4watch.core.errors import UsageError
    from mm4watch.triggers.params import collect, key_value, resolve

    assert [resolve(v) for v in ("5", "-3", "0.1", "1e3", "True", "False", "None", "true", "resnet", "")] == [
        5, -3, 0.1, 1000.0, True, False, None, "true", "resnet", ""
    ]  # fmt: skip
    assert resolve("[1, 2]") == [1, 2] and resolve("{a: 1}") == {"a": 1}
    assert key_value("expr=a=b") == ("expr", "a=b")
    with pytest.raises(UsageError, match="looks like JSON or YAML but does not parse"):
        resolve("[1, 2")
    with pytest.raises(UsageError, match="not KEY=VALUE"):
        key_value("n5")
    params = tmp_path / "params.yaml"
    params.write_text("epochs: 5\nlayers: [64, 32]\nname: base\n")
    got = collect(["epochs=20"], [["layers", "[128]"], ["opts", "{lr: 0.1}"]], [["name", "007"]], [str(params)])
    assert got == {"epochs": 20, "layers": [128], "name": "007", "opts": {"lr": 0.1}}
    with pytest.raises(UsageError, match="-y xs looks like JSON or YAML but does not parse"):
        collect(yaml_values=[["xs", "[1, 2"]])
    (tmp_path / "bad.yaml").write_text("- just\n- a list\n")
    with pytest.raises(UsageError, match="must hold a mapping"):
        collect(files=[str(tmp_path / "bad.yaml")])


def test_unexpected_error_writes_crash_log(project):
    # a results path that is a file makes mkdir fail in a way no check anticipates
    (project / "mm4.toml").write_text('[project]\nresults = "results"\n')
    (project / "results").write_text("a file where a folder should be")
    (project / "notebooks" / "x.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    done = mm4(["run", "notebooks/x.ipynb"], cwd=project)
    assert done.returncode == 3 and "unexpected error" in done.stderr and "Traceback" not in done.stderr
    log = (project / ".mm4" / "crash.log").read_text()
    assert "Traceback" in log and "mm4watch 0.1.0" in log


def test_hidden_commands_stay_hidden_and_a_typo_gets_a_guess(tmp_path):
    helped = mm4(["--help"], cwd=tmp_path)
    assert helped.returncode == 0 and "_exec" not in helped.stdout
    wrong = mm4(["shwo"], cwd=tmp_path)
    assert wrong.returncode == 2 and "_exec" not in wrong.stderr and "did you mean 'show'?" in wrong.stderr
    usage = mm4(["run"], cwd=tmp_path)  # a usage error shows the subcommand's usage
    assert usage.returncode == 2 and "usage: mm4watch run" in usage.stderr


def test_every_console_script_answers_help(tmp_path):
    for argv in (["mm4watch", "--help"], ["mm4watch-hook", "--help"]):
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (argv, done.stderr)
        assert done.stdout.lstrip().lower().startswith(("usage", "the git hooks")), done.stdout[:200]


def complete(line: str, cwd) -> list[str]:
    out = cwd / "completions.txt"
    env = {
        "_ARGCOMPLETE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
    }
    mm4([], cwd=cwd, env=env)
    return sorted(w.strip() for w in out.read_text().split("\x0b") if w.strip())


def test_shell_completion_knows_commands_notebooks_runs_and_executors(project):
    for shell, marker in (("bash", "complete"), ("zsh", "compdef"), ("fish", "complete")):
        done = mm4(["completion", shell], cwd=project)
        assert done.returncode == 0 and marker in done.stdout and "mm4watch" in done.stdout
    (project / "notebooks" / "10_clean.ipynb").write_text("{}")
    (project / "results" / "10_clean_20260101_000000").mkdir(parents=True)
    (project / "mm4.toml").write_text('[executors.mini]\ntype = "docker"\nhost = "ssh://me@mini"\n')
    assert complete("mm4watch sh", project) == ["show"]
    assert complete("mm4watch run notebooks/1", project) == ["notebooks/10_clean.ipynb"]
    assert complete("mm4watch logs 10_", project) == ["10_clean_20260101_000000"]
    assert complete("mm4watch run --executor m", project) == ["mini"]


@pytest.mark.parametrize("queue", [[], ["--queue"]])
def test_a_notebook_that_is_not_utf8_is_a_usage_error_not_a_crash(project, queue):
    (project / "notebooks" / "latin.ipynb").write_bytes(b'{"cells": [], "metadata": {"a": "caf\xe9"}}')
    done = mm4(["run", *queue, "notebooks/latin.ipynb"], cwd=project)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "notebooks/latin.ipynb: not UTF-8 text; a notebook is JSON in UTF-8" in done.stderr
    assert not (project / "results").exists() or not any((project / "results").iterdir())
