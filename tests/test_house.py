"""The house's rules, read from the source: which room imports which, docker-py in one module,
commands apart, no type switched on outside executors/."""

import ast
from pathlib import Path

import pytest

from mm4watch.core import plugins
from mm4watch.core.config import ExecutorConfig
from mm4watch.executors.base import RemoteConfig

PACKAGE = Path(__file__).resolve().parent.parent / "mm4watch"
# low to high: a room imports only rooms before it (modules at the top, cli and completers, any)
ROOMS = [
    "core", "results", "far", "remote", "executors", "queue", "run", "schedule", "triggers", "views", "lab", "commands",
]  # fmt: skip


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        name = ".".join(("mm4watch", *rel.with_suffix("").parts))
        package = name if rel.name == "__init__.py" else name.rpartition(".")[0]
        if rel.name == "__init__.py":
            name = package
        yield rel, name, package, ast.parse(path.read_text())


def imported(package, tree):
    """(line, module) of every import in ``tree``, relative ones made absolute; for ``from X import a``
    also ``X.a`` (it may be a module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def room_of(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "mm4watch" and parts[1] in ROOMS else None


def test_every_module_lives_in_a_room():
    top = sorted(str(rel) for rel, *_ in modules() if len(rel.parts) == 1)
    assert top == ["__init__.py", "__main__.py", "cli.py", "completers.py"]
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()) == sorted(ROOMS)


def test_rooms_import_only_rooms_below_them():
    upward = []
    for rel, _, package, tree in modules():
        here = room_of(package + ".x") if len(rel.parts) > 1 else None
        if here is None:
            continue
        for line, target in imported(package, tree):
            there = room_of(target)
            if there is not None and ROOMS.index(there) > ROOMS.index(here):
                upward.append(f"mm4watch/{rel}:{line} ({here}) imports {target} ({there})")
    assert upward == []


def test_docker_py_is_imported_by_the_engine_module_only():
    found = sorted(
        f"mm4watch/{rel}:{line}"
        for rel, _, package, tree in modules()
        for line, target in imported(package, tree)
        if target == "docker" or target.startswith("docker.")
    )
    assert found and all(place.startswith("mm4watch/remote/docker_engine.py:") for place in found), found


def test_dask_is_imported_by_the_pool_module_and_its_lease_only():
    found = sorted(
        f"mm4watch/{rel}:{line}"
        for rel, _, package, tree in modules()
        for line, target in imported(package, tree)
        if target.split(".")[0] in ("dask", "distributed", "cloudpickle")
    )
    allowed = ("mm4watch/remote/dask_pool.py:", "mm4watch/remote/dask_lease.py:")
    assert found and all(place.startswith(allowed) for place in found), found


def test_no_command_imports_another():
    found = []
    for rel, name, package, tree in modules():
        if rel.parts[0] != "commands" or rel.name == "__init__.py":
            continue
        for line, target in imported(package, tree):
            if target.startswith("mm4watch.commands.") and target != name and target.count(".") == 2:
                found.append(f"mm4watch/{rel}:{line} imports {target}")
    assert found == []


def test_no_executor_type_is_switched_on_outside_executors():
    """Nothing outside executors/ names an executor's settings class or compares a type name."""
    classes = {plugins.config_class(kind).__name__ for kind in plugins.names()} | {RemoteConfig.__name__}
    types = set(plugins.names()) | set(plugins.ALIASES)
    found = []
    for rel, _, _, tree in modules():
        if rel.parts[0] == "executors":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in classes:
                found.append(f"mm4watch/{rel}:{node.lineno} names {node.id}")
            elif isinstance(node, ast.alias) and node.name in classes:
                found.append(f"mm4watch/{rel} imports {node.name}")
            elif isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(isinstance(s, ast.Attribute) and s.attr == "type" for s in sides) and any(
                    isinstance(s, ast.Constant) and s.value in types for s in sides
                ):
                    found.append(f"mm4watch/{rel}:{node.lineno} compares an executor's type")
    assert found == []


@pytest.mark.parametrize("kind", plugins.names())
def test_every_built_in_type_is_registered_like_a_plug_in(kind):
    executor = plugins.executor_class(kind)
    assert executor.__module__ == f"mm4watch.executors.{kind}" and executor.type == kind
    assert issubclass(executor.config_class, ExecutorConfig)
    assert executor.config_class.__module__ == executor.__module__  # one module: its settings and its transport


def test_the_house_checks_can_fail():
    """The import reader sees what it must: a relative import two rooms up, and docker-py."""
    tree = ast.parse("from ..commands.status import x\nimport docker.types\n")
    seen = [target for _, target in imported("mm4watch.results", tree)]
    assert "mm4watch.commands.status" in seen and "docker.types" in seen
    assert room_of("mm4watch.commands.status") == "commands"


def rooms_as_written():
    """ARCHITECTURE.md's table of rooms: {room: {module: lines}} ("commands" counts its modules)."""
    import re

    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    return {
        room: dict((name, int(count)) for name, count in re.findall(r"(\w+) (\d+)", cell))
        for room, cell in re.findall(r"^\| `(\w+)/` \|.*\| ([^|]+) \|$", text, re.MULTILINE)
    }


def test_the_rooms_table_names_every_module_and_its_size():
    """ARCHITECTURE.md names every module of each room with its line count (within 10%); commands/,
    by their number and lines together."""
    written = rooms_as_written()
    assert sorted(written) == sorted(ROOMS)
    wrong = []
    for room, listed in written.items():
        sizes = {p.stem: len(p.read_text().splitlines()) for p in (PACKAGE / room).glob("*.py") if p.stem != "__init__"}
        if room == "commands":  # "modules 25, lines 1400"
            sizes = {"modules": len(sizes), "lines": sum(sizes.values())}
        if set(listed) != set(sizes):
            wrong.append(
                f"{room}/: missing {sorted(set(sizes) - set(listed))}, gone {sorted(set(listed) - set(sizes))}"
            )
        wrong += [
            f"{room}/{name}: {listed[name]} written, {lines} now"
            for name, lines in sizes.items()
            if name in listed and abs(listed[name] - lines) > 0.1 * lines
        ]
    assert not wrong, "ARCHITECTURE.md's table of rooms is stale:\n" + "\n".join(wrong)


def test_no_function_is_over_80_lines():
    long = [
        f"mm4watch/{rel}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for rel, _, _, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80
    ]
    assert long == []


def test_the_daemon_wires_and_the_scheduler_schedules():
    """The daemon is the small thing that wires the watcher, the save decisions and the scheduler;
    starting, reaping and re-attaching run processes live in schedule/, and what follows a run's end
    listens for it there, not called from the daemon's loop."""
    daemon = (PACKAGE / "triggers" / "daemon.py").read_text()
    assert len(daemon.splitlines()) < 300
    for room in ("schedule", "triggers"):
        for path in (PACKAGE / room).glob("*.py"):
            assert len(path.read_text().splitlines()) < 450, path
    for belongs_in_schedule in ('"_exec"', "request_cancel", "read_record", "notify.send"):
        assert belongs_in_schedule not in daemon, belongs_in_schedule


def _named_modules(tree):
    """(line, module) of every string in ``tree`` that names one of mm4watch's modules (room and
    module: a ``-m`` target, a module to ship), not counting logger names."""
    loggers = {
        id(arg)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "getLogger"
        for arg in node.args
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in loggers:
            parts = node.value.split(":")[0].split(".")  # "module:function" names its module too
            if len(parts) == 3 and parts[0] == "mm4watch" and (PACKAGE / parts[1] / f"{parts[2]}.py").exists():
                yield node.lineno, node.value


def test_links_made_by_name_keep_the_rooms_rule_too():
    """A module named in a string (``python -m mm4watch.far.runner`` on the Mini) is a link like an
    import: it may only point to a room below, or the same."""
    upward = []
    for rel, _, package, tree in modules():
        here = room_of(package + ".x") if len(rel.parts) > 1 else None
        for line, target in _named_modules(tree):
            there = room_of(target)
            if here is not None and ROOMS.index(there) > ROOMS.index(here):
                upward.append(f"mm4watch/{rel}:{line} ({here}) names {target} ({there})")
    assert upward == []
    named = {target for _, _, _, tree in modules() for _, target in _named_modules(tree)}
    assert {"mm4watch.far.runner", "mm4watch.far.there", "mm4watch.remote.dask_agent:main"} <= named  # seen


def test_the_far_side_is_what_is_shipped_and_lies_below_the_executors():
    from mm4watch.executors.far_side import FAR_SIDE

    for name in FAR_SIDE:
        assert (PACKAGE / name).is_file(), name
        room = Path(name).parts[0] if len(Path(name).parts) > 1 else None
        assert room is None or ROOMS.index(room) < ROOMS.index("executors"), name
    assert {p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / "far").glob("*.py")} <= set(FAR_SIDE)


def test_commands_started_as_processes_go_through_one_seam_and_exist():
    """``python -m mm4watch COMMAND`` is spelt in ``core.proc.command`` alone; every command a module
    starts that way by name is one the CLI has."""
    from mm4watch.cli import COMMANDS, HIDDEN

    spelt, started, helpers = [], [], []
    for rel, _, _, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.List, ast.Tuple)):
                words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
                if any(a == "-m" and b == "mm4watch" for a, b in zip(words, words[1:], strict=False)):
                    spelt.append(f"mm4watch/{rel}:{node.lineno}")
            func = node.func if isinstance(node, ast.Call) else None
            if (
                isinstance(func, ast.Attribute)
                and func.attr in ("command", "helper")
                and getattr(func.value, "id", "") == "proc"
            ):
                words = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
                if func.attr == "helper":  # an executor type's helper: mm4watch _helper TYPE NAME
                    helpers.append((f"mm4watch/{rel}:{node.lineno}", words[0], words[1]))
                    words = ["_helper"]
                if words and isinstance(words[0], str):
                    started.append((f"mm4watch/{rel}:{node.lineno}", words[0]))
    assert spelt == ["mm4watch/core/proc.py:30"]  # command() itself
    assert {name for _, name in started} >= {"_exec", "_resume", "_helper", "start", "report"}
    assert [(where, name) for where, name in started if name not in {*COMMANDS, *HIDDEN}] == []
    assert helpers and all(callable(plugins.helper(kind, name)) for _, kind, name in helpers), helpers


def test_processes_are_started_through_the_one_seam():
    """``subprocess`` starts processes in ``core/proc.py`` only (its types and exceptions may be named
    elsewhere), and on the far side, which is shipped alone (``far/``: it cannot import core/proc)."""
    starts = {"run", "Popen", "call", "check_call", "check_output"}
    found = sorted(
        f"mm4watch/{rel}:{node.lineno}"
        for rel, _, _, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in starts
        and getattr(node.func.value, "id", "") == "subprocess"
    )
    assert found and all(place.startswith(("mm4watch/core/proc.py:", "mm4watch/far/")) for place in found), found
