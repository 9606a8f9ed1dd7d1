"""Dask's two ways in answer the same questions: a client here (``dask_pool.Pool``) and this machine's
agent (``dask_agent.AgentPool``), with their leases; no rig needed."""

import inspect

import pytest

from mm4watch.remote import dask_agent, dask_pool


def _members(protocol):
    return [name for name in vars(protocol) if not name.startswith("_") and name not in ("address", "node")]


@pytest.mark.parametrize(
    ("protocol", "client", "agent"),
    [
        (dask_pool.Scheduling, dask_pool.Pool, dask_agent.AgentPool),
        (dask_pool.Leasing, dask_pool.Lease, dask_agent.AgentLease),
    ],
)
def test_the_agent_and_the_client_take_the_same_arguments(protocol, client, agent):
    for name in _members(protocol):
        declared = getattr(protocol, name)
        if isinstance(declared, property):
            assert isinstance(getattr(client, name), property) and isinstance(getattr(agent, name), property)
            continue
        wanted = list(inspect.signature(declared).parameters)
        for kind in (client, agent):
            have = list(inspect.signature(getattr(kind, name)).parameters)
            assert have[: len(wanted)] == wanted, (kind.__name__, name, have)
            extra = [inspect.signature(getattr(kind, name)).parameters[p] for p in have[len(wanted) :]]
            assert all(p.default is not inspect.Parameter.empty for p in extra), (kind.__name__, name)


def test_the_agent_answers_only_the_questions_it_lists():
    assert set(dask_pool.QUERIES) <= set(_members(dask_pool.Scheduling))
    source = inspect.getsource(dask_agent._Server._do)
    assert "getattr(pool, op)" in source and "if op in QUERIES" in source
