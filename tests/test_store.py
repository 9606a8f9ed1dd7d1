import json
from datetime import datetime, timedelta

import pytest

from mm4watch.core.errors import RunNotFound
from mm4watch.results.records import RunRecord, read_record, write_record
from mm4watch.results.store import History, create_run_dir

WHEN = datetime(2026, 11, 28, 13, 5, 9)


def make_run(results, stem, when, status="succeeded", **fields):
    run_id, run_dir = create_run_dir(results, stem, when)
    record = RunRecord(
        id=run_id,
        notebook=f"notebooks/{stem}.ipynb",
        status=status,
        trigger="manual",
        queued_at=when.astimezone().isoformat(),
        **fields,
    )
    write_record(run_dir, record)
    return run_dir


def test_run_dir_names_and_same_second(tmp_path):
    ids = [create_run_dir(tmp_path, "nb", WHEN)[0] for _ in range(3)]
    assert ids == ["nb_20261128_130509", "nb_20261128_130509_2", "nb_20261128_130509_3"]


def test_existing_folder_is_never_reused(tmp_path):
    existing = tmp_path / "nb_20261128_130509"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    run_id, path = create_run_dir(tmp_path, "nb", WHEN)
    assert path != existing and (existing / "keep.txt").read_text() == "mine"


def test_record_round_trip_and_schema(tmp_path):
    run_dir = make_run(tmp_path, "nb", WHEN, commit={"sha": "abc1234", "branch": "main", "dirty": False})
    data = json.loads((run_dir / "run.json").read_text())
    assert list(data)[0] == "schema" and data["schema"] == 1
    record = read_record(run_dir)
    assert record.commit["sha"] == "abc1234" and record.stem == "nb"
    # unknown fields from a newer writer are ignored, not fatal
    data["future_field"] = 1
    (run_dir / "run.json").write_text(json.dumps(data))
    assert read_record(run_dir).id == record.id


def history(tmp_path):
    return History(tmp_path / "results", tmp_path / ".mm4")


def test_query_order_filters_limit(tmp_path):
    results = tmp_path / "results"
    for i in range(5):
        make_run(
            results, "a" if i % 2 else "b", WHEN + timedelta(minutes=i), status="failed" if i == 3 else "succeeded"
        )
    h = history(tmp_path)
    runs = h.query()
    assert [r.queued_at for r in runs] == sorted((r.queued_at for r in runs), reverse=True)
    assert len(runs) == 5
    assert {r.stem for r in h.query(notebook="a")} == {"a"}
    assert len(h.query(notebook="notebooks/a.ipynb")) == 2
    assert [r.status for r in h.query(status="failed")] == ["failed"]
    assert len(h.query(limit=2)) == 2


def test_index_follows_the_folders(tmp_path):
    results = tmp_path / "results"
    first = make_run(results, "nb", WHEN, status="running")
    h = history(tmp_path)
    assert h.query()[0].status == "running"
    # a run that moves on is picked up, however soon after the last query
    record = read_record(first)
    write_record(first, record.evolve(status="failed", duration_s=12.5))
    assert h.query()[0].status == "failed"
    # a new folder appears, a deleted one disappears, a folder without run.json is skipped
    make_run(results, "nb", WHEN + timedelta(seconds=1))
    (results / "half_made").mkdir()
    (results / "README.md").write_text("not a run")
    assert len(h.query()) == 2
    import shutil

    shutil.rmtree(first)
    assert [r.id for r in h.query()] == ["nb_20261128_130510"]


def test_corrupt_index_is_rebuilt(tmp_path):
    make_run(tmp_path / "results", "nb", WHEN)
    h = history(tmp_path)
    assert len(h.query()) == 1
    h.index_path.write_bytes(b"this is not sqlite" * 100)
    for suffix in ("-wal", "-shm"):
        (tmp_path / ".mm4" / f"history.sqlite{suffix}").unlink(missing_ok=True)
    assert len(history(tmp_path).query()) == 1


def test_unreadable_record_is_skipped(tmp_path):
    good = make_run(tmp_path / "results", "nb", WHEN)
    bad = tmp_path / "results" / "broken_20261128_000000"
    bad.mkdir()
    (bad / "run.json").write_text("{ not json")
    assert [r.id for r in history(tmp_path).query()] == [good.name]


def test_find(tmp_path):
    results = tmp_path / "results"
    a1 = make_run(results, "alpha", WHEN)
    a2 = make_run(results, "alpha", WHEN + timedelta(hours=1))
    make_run(results, "beta", WHEN)
    h = history(tmp_path)
    assert h.find(a1.name)[0].id == a1.name
    assert h.find(str(a1))[0].id == a1.name
    assert h.find("beta_")[0].stem == "beta"
    assert h.find("alpha")[0].id == a2.name  # a notebook name means its newest run
    with pytest.raises(RunNotFound, match="matches 2 runs"):
        h.find("alpha_2026")
    with pytest.raises(RunNotFound, match="mm4watch history"):
        h.find("gamma")
