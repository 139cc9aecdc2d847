"""The record database: queries, JSON lines, versioning, concurrent writers."""
import io
import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from tensordsl.autotune.records import RecordDB


def test_add_query_and_best(tmp_path):
    db = RecordDB(tmp_path / "r.sqlite")
    db.add("w1", "llvm", "matmul", {"mr": 6}, "ok", seconds=2.0, gflops=10.0)
    db.add("w1", "llvm", "matmul", {"mr": 8}, "ok", seconds=1.0, gflops=20.0)
    db.add("w1", "llvm", "matmul", {"mr": 4}, "crash", error="the worker died (signal 11)")
    db.add("w2", "llvm", "rowwise", {}, "ok", seconds=5.0)
    assert [r["config"] for r in db.trials("w1", "llvm")] == [{"mr": 6}, {"mr": 8}, {"mr": 4}]
    assert db.best("w1", "llvm")["config"] == {"mr": 8}
    assert db.best("w1", "cuda") is None
    assert sorted((w, n) for w, _, n, _ in db.workloads()) == [("w1", 3), ("w2", 1)]
    with pytest.raises(ValueError, match="status must be one of"):
        db.add("w1", "llvm", "matmul", {}, "fine")


def test_export_import_round_trip_adds_nothing_twice(tmp_path):
    a = RecordDB(tmp_path / "a.sqlite")
    for k in range(5):
        a.add("w", "llvm", "matmul", {"kc": 64 * (k + 1)}, "ok", seconds=1.0 + k)
    text = io.StringIO()
    assert a.export_jsonl(text) == 5
    b = RecordDB(tmp_path / "b.sqlite")
    assert b.import_jsonl(text.getvalue().splitlines()) == (5, 0)
    assert b.import_jsonl(text.getvalue().splitlines()) == (0, 5)
    assert [r["config"] for r in b.trials()] == [r["config"] for r in a.trials()]
    with pytest.raises(ValueError, match="line 1: not a tuning record"):
        b.import_jsonl(['{"workload": "w"}'])


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    RecordDB(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="schema version 99"):
        RecordDB(path)


def test_two_processes_write_one_database_at_once(tmp_path):
    path = tmp_path / "r.sqlite"
    RecordDB(path).close()
    writer = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parents[2])!r})
        from tensordsl.autotune.records import RecordDB
        db = RecordDB({str(path)!r})
        for k in range(60):
            db.add("w", "llvm", "matmul", {{"writer": sys.argv[1], "k": k}}, "ok", seconds=k)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(w)]) for w in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    rows = RecordDB(path).trials("w", "llvm")
    assert len(rows) == 180
    assert len({json.dumps(r["config"], sort_keys=True) for r in rows}) == 180


def test_a_version_1_database_is_upgraded_in_place(tmp_path):
    # a file written before records carried a readable name and a user file's source
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE trials (id INTEGER PRIMARY KEY AUTOINCREMENT, uid TEXT NOT NULL UNIQUE,
            workload TEXT NOT NULL, target TEXT NOT NULL, template TEXT NOT NULL,
            config TEXT NOT NULL, status TEXT NOT NULL, seconds REAL, gflops REAL,
            error TEXT, created REAL NOT NULL, run TEXT NOT NULL);
        INSERT INTO trials (uid, workload, target, template, config, status, seconds,
            created, run) VALUES ('u1', 'w1', 'llvm', 'matmul', '{"mr": 6}', 'ok', 0.5, 0, 'r');
    """)
    conn.commit()
    conn.close()
    db = RecordDB(path)
    (old,) = db.trials()
    assert old["config"] == {"mr": 6} and old["name"] is None and old["source"] is None
    db.add("w1", "llvm", "matmul", {"mr": 8}, "ok", seconds=0.25, name="matmul(8x8, 8x8)")
    assert db.best("w1", "llvm")["name"] == "matmul(8x8, 8x8)"
    assert db.names() == {"w1": "matmul(8x8, 8x8)"}


def test_a_configuration_measured_again_counts_with_its_median(tmp_path):
    # one lucky measurement (1.0) among slower ones no longer wins on its own
    db = RecordDB(tmp_path / "r.sqlite")
    for seconds in (1.0, 3.0, 3.2):
        db.add("w", "llvm", "conv2d", {"mr": 6}, "ok", seconds=seconds, gflops=6.0 / seconds)
    db.add("w", "llvm", "conv2d", {"mr": 8}, "ok", seconds=2.0)
    db.add("w", "llvm", "conv2d", {"mr": 4}, "crash", error="signal 11")
    best = db.best("w", "llvm", "conv2d")
    assert best["config"] == {"mr": 8} and best["seconds"] == 2.0
    db.add("w", "llvm", "conv2d", {"mr": 8}, "ok", seconds=3.6)
    db.add("w", "llvm", "conv2d", {"mr": 8}, "ok", seconds=4.0)
    best = db.best("w", "llvm", "conv2d")
    assert best["config"] == {"mr": 6}
    assert (best["seconds"], best["measurements"]) == (3.0, 3)
    assert best["gflops"] == pytest.approx(2.0)


def test_export_best_writes_every_measurement_of_each_fastest_configuration(tmp_path):
    db = RecordDB(tmp_path / "r.sqlite")
    for seconds in (1.0, 3.0, 3.2):
        db.add("w", "llvm", "conv2d", {"mr": 6}, "ok", seconds=seconds)
    db.add("w", "llvm", "conv2d", {"mr": 8}, "ok", seconds=2.0)
    db.add("w", "llvm", "conv2d", {"mr": 4}, "crash", error="signal 11")
    db.add("v", "llvm", "matmul", {"kc": 64}, "ok", seconds=5.0)
    db.add("v", "llvm", "matmul", {"kc": 128}, "ok", seconds=4.0)
    text = io.StringIO()
    assert db.export_jsonl(text, best_only=True) == 2
    shipped = [json.loads(line) for line in text.getvalue().splitlines()]
    assert sorted((r["workload"], json.dumps(r["config"])) for r in shipped) == \
        [("v", '{"kc": 128}'), ("w", '{"mr": 8}')]
