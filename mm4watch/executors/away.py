"""A machine that goes away under a run and comes back: the shared steps ``base.Executor`` takes
for an executor that ``rides_out_loss`` (docker, native). It waits for the machine (a probe backing
off to ``LOST_PROBE_MAX_S``, the run's timeout the limit), finds the run there again
(``reconnect``), brings home what the run wrote (tried again while the machine settles) or keeps
it there for ``mm4watch fetch``, and says what happened in words (``job.lost``)."""

from __future__ import annotations

import errno
import time
from typing import TYPE_CHECKING, Any

from ..core.durations import format_duration
from . import HOME_PHASE, Job, Outcome
from .runlog import brief, last_cell, log_line

if TYPE_CHECKING:
    from .base import Executor

LOST_PROBE_MAX_S = 30.0  # a machine that went away is asked again at most this often
HARVEST_TRIES = 4  # what a run whose machine came back wrote there: fetched this many times before it is kept there


def lost_preparing(ex: Executor[Any], job: Job, exc: Exception, info: dict[str, Any]) -> Outcome:
    """The machine went away while the run was made ready (nothing ran yet): wait for it while the
    run's timeout allows, so that the run again (``[run] retry_lost``) finds it back."""
    from ..core.durations import clock_time

    went, doing = time.time(), job.doing or f"preparing on {ex.name}"
    log_line(job, f"{ex.name} went away while {doing}: {exc}")
    job.phase(f"{ex.name} went away at {clock_time(went)}; waiting for it")
    back = until_back(ex, time.monotonic() + job.timeout_s)
    words = f"{ex.name} went away at {clock_time(went)} while {doing} ({brief(exc)})"
    job.lost.append(
        f"{words}; it answered again at {clock_time(back)}"
        if back is not None
        else f"{words} and did not answer again within the run's timeout of {format_duration(job.timeout_s)}"
    )
    log_line(job, job.lost[-1])
    return ex.outcome(job, "lost", None, info)


def home_after_loss(ex: Executor[Any], handle: Any, job: Job, exc: Exception) -> bool:
    """The run ended there, then the machine went away while its results came home: once it answers
    again, they come (``_harvest_lost``). Whether they did."""
    from ..core.durations import clock_time

    went = time.time()
    log_line(job, f"{ex.name} went away while the results came home: {exc}; waiting for it to answer again")
    job.phase(f"{ex.name} went away at {clock_time(went)}; waiting for it")
    if until_back(ex, time.monotonic() + job.timeout_s) is None:
        job.lost.append(
            f"{ex.name} went away at {clock_time(went)} while the run's results came home and did not answer "
            f"again within the run's timeout of {format_duration(job.timeout_s)}; they stay there"
        )
        log_line(job, job.lost[-1])
        keep(ex, handle, job)
        return False
    job.phase(HOME_PHASE)
    try:
        ex.reconnect(handle, job, went)
    except Exception:  # noqa: BLE001 (not settled yet: the harvest's own tries wait for it)
        pass
    return harvest_lost(ex, handle, job, f"{ex.name} went away at {clock_time(went)} while the results came home")


def until_back(ex: Executor[Any], deadline: float) -> float | None:
    """When the machine answers again (a probe backing off to LOST_PROBE_MAX_S); None at ``deadline``."""
    delay = 1.0
    while not ex.answers():
        if time.monotonic() + delay >= deadline:
            return None
        time.sleep(delay)
        delay = min(LOST_PROBE_MAX_S, delay * 2)
    return time.time()


def harvest_lost(ex: Executor[Any], handle: Any, job: Job, said: str = "") -> bool:
    """What a run whose machine went away wrote there, home (tried again while the machine settles
    after its return); if it cannot come, it stays there. Whether it came."""
    why = ""
    for attempt in range(1, HARVEST_TRIES + 1):
        try:
            ex._harvest(handle, job)
            return True
        except Exception as exc:  # noqa: BLE001 (the machine is away again, or the container gone: said)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise  # no room here: trying again will not make any (Executor._no_room_here)
            why = brief(exc)
        if attempt < HARVEST_TRIES:
            time.sleep(2.0 * attempt)
            try:
                ex.reconnect(handle, job, time.time())
            except Exception:  # noqa: BLE001 (not back yet: the next try says)
                pass
    keep(ex, handle, job)
    said = said or (job.lost[-1] if job.lost else f"{ex.name} went away")
    job.lost.append(f"{said}; what it wrote could not come home ({why}) and is kept there")
    log_line(job, job.lost[-1])
    return False


def keep(ex: Executor[Any], handle: Any, job: Job) -> str:
    """Leave the run's files on that machine, and note where for the record (``mm4watch fetch``)."""
    where = ex.keep_there(handle)
    job.kept[:] = [where or f"on {ex.name}"]
    return where


def mid_run(ex: Executor[Any], handle: Any, job: Job, exc: Exception, deadline: float) -> tuple[str, int | None] | None:
    """The machine stopped answering mid-run: wait for it (a probe backing off to LOST_PROBE_MAX_S)
    while the run's timeout allows, then find the run there again. None: it goes on; else how it ended."""
    from ..core.durations import clock_time

    went = time.time()
    cell = last_cell(job.log_path)
    during = f" while cell {cell} ran" if cell else ""
    log_line(job, f"{ex.name} went away{during}: {exc}; waiting for it to answer again")
    job.phase(f"{ex.name} went away at {clock_time(went)}; waiting for it")
    from ..remote.ssh import Unreachable

    found: tuple[str, int | None, str] | None = None
    while found is None:
        if until_back(ex, deadline) is None:
            job.lost.append(
                f"{ex.name} went away at {clock_time(went)}{during} and did not answer again within the "
                f"run's timeout of {format_duration(job.timeout_s)}; what the run wrote there stays there"
            )
            keep(ex, handle, job)
            return "lost", None
        try:
            found = ex.reconnect(handle, job, went)
        except Unreachable:  # ssh answers before its engine does: not back yet
            time.sleep(min(LOST_PROBE_MAX_S, 2.0))
    back = time.time()
    state, code, what = found
    if state in ("running", "exited"):  # the connection dropped; the run went on there (or ended on its own)
        log_line(job, f"{ex.name} answers again at {clock_time(back)}: the run went on there meanwhile")
        if state == "exited":
            return "exited", code
        job.phase(f"running on {ex.name}")
        return None
    job.lost.append(
        f"{ex.name} went away at {clock_time(went)}{during} ({what}); it answered again at {clock_time(back)}"
    )
    log_line(job, job.lost[-1])
    return "lost", code
