"""Pure parts of the daemon: the queue's rules, the debouncer, which paths count."""

from pathlib import Path

import pytest

from mm4watch.queue import entries as queue_mod
from mm4watch.queue.entries import Queue, QueueFull
from mm4watch.triggers.watcher import Debouncer, counts


def test_supersede_keeps_the_newest_unstarted_entry(tmp_path):
    q = Queue(tmp_path)
    first = q.add("nb/a.ipynb", "save", content=b"1", executor="local").id
    q.add("nb/b.ipynb", "save", content=b"x", executor="local")
    second = q.add("nb/a.ipynb", "save", content=b"2", executor="local").id
    waiting = q.entries(("queued",))
    assert [(e.notebook, e.content) for e in waiting] == [("nb/b.ipynb", b"x"), ("nb/a.ipynb", b"2")]
    assert q.get(first).state == "superseded" and q.get(second).state == "queued"


def test_a_started_entry_is_not_superseded(tmp_path):
    q = Queue(tmp_path)
    first = q.add("a.ipynb", "save", content=b"1", executor="local").id
    assert q.claim(first, 123, 1.0)
    q.add("a.ipynb", "save", content=b"2", executor="local")
    assert q.get(first).state == "claimed" and len(q.entries(("queued",))) == 1


def test_claim_is_once_and_release_backs_off(tmp_path):
    q = Queue(tmp_path)
    entry = q.add("a.ipynb", "manual", content=b"1", parameters={"n": 1}, executor="mini").id
    assert q.claim(entry, 1, 1.0) and not q.claim(entry, 2, 2.0)
    q.release(entry, delay_s=60, error="the Mini is away")
    got = q.get(entry)
    assert got.state == "queued" and got.last_error == "the Mini is away" and got.attempts == 1
    assert got.parameters == {"n": 1}
    assert q.next_ready() is None  # not before its backoff
    q.release(entry, delay_s=0)
    assert q.next_ready().id == entry
    assert q.next_ready({"mini"}) is None  # its executor is busy


def test_queue_full_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(queue_mod, "MAX_QUEUED", 2)
    q = Queue(tmp_path)
    q.add("a.ipynb", "save", content=b"1")
    q.add("b.ipynb", "save", content=b"1")
    with pytest.raises(QueueFull, match="the queue is full .* nothing was added"):
        q.add("c.ipynb", "save", content=b"1")
    q.add("a.ipynb", "save", content=b"2")  # superseding makes room
    assert len(q.entries(("queued",))) == 2


def test_remove_clear_and_seen(tmp_path):
    q = Queue(tmp_path)
    a = q.add("a.ipynb", "save", content=b"1").id
    q.add("b.ipynb", "save", content=b"1")
    assert q.remove(a) and not q.remove(a)
    assert q.clear() == 1 and q.entries() == []
    assert q.seen("a.ipynb") is None
    q.see("a.ipynb", "h1")
    q.see("a.ipynb", "h2")
    assert Queue(tmp_path).seen("a.ipynb") == "h2"  # it persists


def due(d, now):
    return [path for path, _ in d.due(now)]


def test_debouncer_waits_for_quiet():
    d = Debouncer(2.0)
    d.touch("a", 0.0)
    d.touch("a", 1.5)
    d.touch("b", 1.0)
    assert due(d, 2.9) == []
    assert due(d, 3.0) == ["b"]
    assert due(d, 3.4) == []
    assert due(d, 3.5) == ["a"] and d.pending() == 0


@pytest.mark.parametrize(
    "path, ok",
    [
        ("/p/notebooks/a.ipynb", True),
        ("/p/notebooks/sub/b.ipynb", True),
        ("/p/notebooks/.~a.ipynb", False),
        ("/p/notebooks/.ipynb_checkpoints/a-checkpoint.ipynb", False),
        ("/p/notebooks/a.py", False),
        ("/p/notebooks/a.ipynb.tmp", False),
        ("/p/notebooks/.a.ipynb.swp", False),
        ("/p/results/x/executed.ipynb", False),
        ("/p/data/d.ipynb", False),
    ],
)
def test_which_paths_count(path, ok):
    assert counts(path, [Path("/p/results"), Path("/p/data")]) is ok
