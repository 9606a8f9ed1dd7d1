"""Every request for a run comes in here: a save, a commit, ``run --queue``, a rerun.

The queue decides whether it is a new run, the same request as one queued,
running or just done (merged), or a newer save replacing an older one (see
``queue``). A request merged into a run that already finished amends that
run's record here (its triggers, and its commit when a commit asked for the
same bytes); one merged into a running run is recorded by that run's process
when it ends (``record_triggers``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.config import Config
from .entries import STATE_WORDS, Queue
from .schema import Added, Entry


def request(
    cfg: Config,
    notebook: str,
    trigger: str,
    *,
    content: bytes | None,
    executor: str | None,
    parameters: dict[str, Any] | None = None,
    commit_sha: str | None = None,
    branch: str | None = None,
    queue: Queue | None = None,
    sweep: dict[str, Any] | None = None,
) -> Added:
    from ..core.names import notebook_key

    added = (queue or Queue(cfg.state_dir)).add(
        notebook_key(cfg.root, notebook),  # one name, whichever way it came: a save, a commit, a command
        trigger,
        content=content,
        commit_sha=commit_sha,
        parameters=parameters,
        executor=executor,
        branch=branch,
        sweep=sweep,
    )
    target = added.merged_into
    if target is not None and target.state == "done":
        record_triggers(cfg, target)
    return added


def request_sweep(
    cfg: Config,
    notebook: str,
    trigger: str,
    sets: list[dict[str, Any]],
    *,
    content: bytes | None,
    executor: str | None,
    fixed: dict[str, Any] | None = None,
    commit_sha: str | None = None,
    branch: str | None = None,
    queue: Queue | None = None,
) -> tuple[str, list[Added]]:
    """One request per parameter set in ``sets`` (over ``fixed``), as runs of one new sweep: its id and
    what became of each."""
    import secrets
    import time

    queue = queue or Queue(cfg.state_dir)
    sweep_id = f"{Path(notebook).stem[:24]}-{time.strftime('%m%d%H%M%S')}-{secrets.token_hex(2)}"
    added = [
        request(
            cfg,
            notebook,
            trigger,
            content=content,
            executor=executor,
            parameters={**(fixed or {}), **values},
            commit_sha=commit_sha,
            branch=branch,
            queue=queue,
            sweep={"id": sweep_id, "index": i, "of": len(sets)},
        )  # fmt: skip
        for i, values in enumerate(sets)
    ]
    return sweep_id, added


SWEEP_STATES = ("queued", "claimed", "done", "parked", "removed", "superseded", "merged")


def sweeps(queue: Queue, under_way: bool = False) -> dict[str, dict[str, int]]:
    """The sweeps in the queue (``under_way``: those with a run queued or running): how many of each
    one's runs are in each state (queued, claimed, done, ...)."""
    going = {str(e.sweep.get("id")) for e in queue.entries(("queued", "claimed"), sweeps=True) if e.sweep}
    if under_way and not going:
        return {}  # the usual case: no sweep's run waits, and the ended ones are not read
    found: dict[str, dict[str, int]] = {}
    for entry in queue.entries(SWEEP_STATES, sweeps=True):
        name = str((entry.sweep or {}).get("id"))
        if not under_way or name in going:
            counts = found.setdefault(name, {})
            counts[entry.state] = counts.get(entry.state, 0) + 1
    return found


def remove_sweep(queue: Queue, sweep_id: str) -> int:
    """A sweep's runs that have not started, removed from the queue: how many."""
    waiting = [e for e in queue.entries(("queued",)) if (e.sweep or {}).get("id") == sweep_id]
    return sum(queue.remove(e.id) for e in waiting)


def record_triggers(cfg: Config, entry: Entry) -> None:
    """Write every request ``entry`` answered into its run's record (when it has one)."""
    if not entry.run_id or len(entry.triggers) < 2:
        return
    from ..core import git
    from ..results.records import amend_triggers
    from ..results.store import History

    run_dir = cfg.results_dir / entry.run_id
    try:
        leave_out = (cfg.project.results, cfg.project.data)
        holds = lambda tree, sha: git.same_code(cfg.root, tree, sha, leave_out)  # noqa: E731
        if amend_triggers(run_dir, entry.triggers, holds) is not None:
            History(cfg.results_dir, cfg.state_dir).refresh(entry.run_id)
    except (OSError, ValueError):
        pass  # the folder is gone (moved by the user): the queue still says what merged


def describe(added: Added) -> str:
    """One line on what became of a request."""
    target = added.merged_into
    if target is None:
        replaced = (
            f"; it replaces the older save in entry {', '.join(map(str, added.superseded))}" if added.superseded else ""
        )
        return f"entry {added.id}{replaced}"
    state = STATE_WORDS.get(target.state, target.state)
    run = f", run {target.run_id}" if target.run_id else ""
    return f"the same run as entry {target.id} ({state}{run}): not run again"
