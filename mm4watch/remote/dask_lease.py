"""The lease: the one task mm4watch gives Dask, run on the worker the scheduler picks.

It holds the worker's resources (``mps=1``) while the run it stands for goes on
over ssh: it says where it runs (the ``:at`` variable, the ``:placed`` event),
then waits for ``:go``. It ends by itself when the client that holds it is gone
(this machine's Dask agent, ``dask_agent``, holds the ``:holder`` semaphore, whose
lease the scheduler drops about 30 s after its client stops refreshing it), so a
killed agent leaks no slot (a killed run process: its agent lets go at once).
Run again by the scheduler after its first worker was lost, it ends at once:
the run it stood for is over there.

Sent to the worker as source text, run there by ``exec`` (``dask_pool``): the
worker has Dask, not mm4watch, and its Python may be another minor version than
this machine's, so this module imports nothing of mm4watch, keeps to what Python
3.10 has, and its result is not needed (the lease's state is in the scheduler).
"""

from __future__ import annotations

from typing import Any

CHECK_S = 2.0  # how often a held lease looks whether its holder is still there


def hold(name: str, check_s: float = CHECK_S) -> dict[str, Any]:
    from distributed import Event, Semaphore

    placed = Event(name + ":placed")
    if placed.is_set():  # run again after its worker was lost: that run has ended
        return {"ended": "run again after its worker was lost"}
    placed.set()
    go = Event(name + ":go")
    holder = Semaphore(max_leases=1, name=name + ":holder")
    ended = "let go"
    while not go.wait(timeout=check_s):
        if holder.acquire(timeout=0.1):  # its holder's lease expired: the process that held it is gone
            holder.release()
            ended = "its holder is gone"
            break
    holder.close()
    go.clear()
    return {"ended": ended}
