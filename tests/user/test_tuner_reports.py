"""The tuner says why trials fail, and records can be cleaned up and re-tuned without
deleting the database by hand."""
from tensordsl.autotune.records import RecordDB

# factor 8 raises, factor 32 crashes the worker, the others run
FLAKY = """
    import ctypes
    import tensordsl as td

    SPACE = {"factor": [4, 8, 16, 32]}
    DEFAULT = {"factor": 4}

    def scale(n):
        x = td.placeholder((n,), name="x")
        return [x, td.compute((n,), lambda i: x[i] * 2.0, name="y")]

    def schedule(s, outs, config):
        (y,) = outs
        if config["factor"] == 8:
            raise RuntimeError("factor 8 is not supported")
        if config["factor"] == 32:
            ctypes.string_at(0)
        o, i = s[y].split(y.op.axis[0], factor=config["factor"])
        s[y].vectorize(i)
"""

# every trial fails: the schedule reads a knob SPACE does not have
BROKEN = """
    import tensordsl as td

    SPACE = {"factor": [4, 8]}

    def scale(n):
        x = td.placeholder((n,), name="x")
        return [x, td.compute((n,), lambda i: x[i] * 2.0, name="y")]

    def schedule(s, outs, config):
        (y,) = outs
        o, i = s[y].split(y.op.axis[0], factor=config["tile"])
"""


def test_progress_and_summary_count_outcomes_and_show_the_first_error_of_each(
        write, tensordsl, tmp_path):
    write("flaky.py", FLAKY)
    rc, out, err = tensordsl("tune", "flaky.py:scale", "--shape", "256", "--trials", "4",
                             "--timeout", "60", "--db", tmp_path / "r.sqlite")
    assert rc == 0, err
    text = out + err
    # the summary: this run's trials by outcome, then the first error of each kind
    assert "4 trials this run: " in text
    counts = text.split("4 trials this run: ")[1].splitlines()[0]
    assert sorted(counts.split(", ")) == ["crash 1", "error 1", "ok 2"], counts
    assert "first error: RuntimeError: factor 8 is not supported  (config {'factor': 8})" \
        in text
    assert "first crash: the worker died (signal 11)" in text
    assert "best of flaky.py:scale(256)" in out


def test_a_run_where_every_trial_fails_says_why(write, tensordsl, tmp_path):
    write("broken.py", BROKEN)
    rc, out, err = tensordsl("tune", "broken.py:scale", "--shape", "256", "--trials", "2",
                             "--timeout", "60", "--db", tmp_path / "r.sqlite")
    assert rc == 1
    assert "2 trials this run: error 2" in err
    assert "first error: KeyError: 'tile'" in out + err
    assert "no configuration of broken.py:scale(256) ran successfully" in err


def test_records_are_listed_by_name_and_deleted_by_name(write, tensordsl, tmp_path):
    write("flaky.py", FLAKY)
    db = tmp_path / "r.sqlite"
    rc, _, err = tensordsl("tune", "flaky.py:scale", "--shape", "256", "--trials", "4",
                           "--timeout", "60", "--db", db)
    assert rc == 0, err
    rc, out, err = tensordsl("records", "list", "--db", db)
    assert rc == 0, err
    (line,) = out.splitlines()
    fields = line.split("\t")
    assert fields[1] == "4 trials" and fields[3] == "2 failed"
    assert fields[4] == "flaky.py:scale(256)"
    rc, out, err = tensordsl("records", "delete", "flaky.py:scale(256)", "--failed", "--db", db)
    assert rc == 0, err
    assert out.strip() == "deleted 2 failed records of flaky.py:scale(256)"
    assert sorted(r["status"] for r in RecordDB(db).trials()) == ["ok", "ok"]
    # by its id, as records list shows it
    # (the two successful trials and the confirming rounds' 4 x 2 measurements of them)
    rc, out, err = tensordsl("records", "delete", fields[5], "--db", db)
    assert rc == 0 and "deleted 10 records" in out, err
    assert RecordDB(db).trials(confirming=True) == []
    rc, out, err = tensordsl("records", "delete", "nothing.py:here", "--db", db)
    assert rc == 2 and "no workload 'nothing.py:here'" in err


def test_tuning_again_after_fixing_the_file_measures_afresh(write, tensordsl, tmp_path):
    path = write("op.py", BROKEN)
    db = tmp_path / "r.sqlite"
    argv = ["tune", "op.py:scale", "--shape", "256", "--trials", "2", "--timeout", "60",
            "--db", db]
    rc, _, err = tensordsl(*argv)
    assert rc == 1 and "KeyError" in err
    # the user fixes the schedule and runs the same command again: no --resume, no
    # deleting the database, and the configurations that failed before are measured
    path.write_text(path.read_text().replace('config["tile"]', 'config["factor"]'))
    rc, out, err = tensordsl(*argv)
    assert rc == 0, err
    rows = RecordDB(db).trials()
    assert [r["status"] for r in rows] == ["error", "error", "ok", "ok"]
    assert rows[0]["config"] == rows[2]["config"]
