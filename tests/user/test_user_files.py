"""One contract for a user's file, the same for ``tune``, ``show``, ``bench`` and
``td.build``: ``tensordsl tune my_op.py:bias_relu --shape 512,256`` calls
``bias_relu(512, 256)``, which returns its tensors (inputs, then the output) or a
``(schedule, tensors)`` pair; the file may define ``SPACE``, ``DEFAULT`` and
``schedule(s, outs, config)``."""
import importlib.util

import numpy as np

import tensordsl as td
from tensordsl import autotune
from tensordsl.autotune.records import RecordDB
from tests.helpers import poisoned

# DEFAULT is read as config["factor"]: a reference build given {} fails with KeyError
BIAS_RELU = """
    import tensordsl as td

    SPACE = {"factor": [4, 8, 16]}
    DEFAULT = {"factor": 16}

    def bias_relu(m, n):
        A = td.placeholder((m, n), name="A")
        b = td.placeholder((n,), name="b")
        R = td.compute((m, n), lambda i, j: td.maximum(A[i, j] + b[j], 0.0), name="R")
        return [A, b, R]

    def schedule(s, outs, config):
        (R,) = outs
        o, i = s[R].split(R.op.axis[1], factor=config["factor"])
        s[R].vectorize(i)
"""

HAND = """
    import tensordsl as td

    def plus_one(n, dtype):
        A = td.placeholder((n,), dtype=dtype, name="A")
        B = td.compute((n,), lambda i: A[i] + td.const(1, dtype), name="B")
        s = td.create_schedule(B.op)
        o, i = s[B].split(B.op.axis[0], factor=8)
        s[B].vectorize(i)
        return s, [A, B]
"""


def _import(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_file_tuned_from_the_cli_is_built_by_td_build_with_its_best_record(
        write, tensordsl, tmp_path):
    path = write("my_op.py", BIAS_RELU)
    db_path = tmp_path / "r.sqlite"
    rc, out, err = tensordsl("tune", "my_op.py:bias_relu", "--shape", "64,48", "--trials", "3",
                             "--timeout", "60", "--db", db_path)
    assert rc == 0, err
    assert "best of my_op.py:bias_relu(64, 48)" in out
    db = RecordDB(db_path, create=False)
    rows = db.trials()
    # bias_relu(64, 48) was called; the reference build used DEFAULT, so no trial failed
    assert len(rows) == 3 and {r["status"] for r in rows} == {"ok"}, rows
    assert rows[0]["config"] == {"factor": 16}            # trial 0 is DEFAULT
    assert {r["name"] for r in rows} == {"my_op.py:bias_relu(64, 48)"}

    # a faster configuration, as a longer tuning run would find and confirm (measured
    # more often than the search's confirming rounds may have measured it already)
    best = db.best(rows[0]["workload"], rows[0]["target"])
    for k in range(7):
        db.add(best["workload"], best["target"], best["template"], {"factor": 4}, "ok",
               seconds=best["seconds"] / 100, name=best["name"], source=best["source"],
               created=1.0 + k)

    op = _import(path)
    tuned_ir = str(td.lower(*autotune.Workload(f"{path}:bias_relu", [("value", 64),
                                                                       ("value", 48)])
                            .schedule({"factor": 4})))
    default_ir = str(td.lower(*autotune.Workload(f"{path}:bias_relu", [("value", 64),
                                                                         ("value", 48)])
                              .schedule(None)))
    assert tuned_ir != default_ir
    with autotune.apply_history_best(db):
        f = td.build(op.bias_relu(64, 48))       # tensors only: td.build schedules them
    assert str(f.func) == tuned_ir               # the record's schedule, the file's template
    a = np.random.default_rng(0).standard_normal((64, 48)).astype("float32")
    b = np.random.default_rng(1).standard_normal(48).astype("float32")
    r = poisoned((64, 48))
    f(a, b, r)
    np.testing.assert_allclose(r, np.maximum(a + b, 0), rtol=1e-6)


def test_show_and_bench_call_the_function_with_the_sizes(write, tensordsl):
    write("my_op.py", BIAS_RELU)
    rc, out, err = tensordsl("show", "my_op.py:bias_relu", "--shape", "64,48")
    assert rc == 0, err
    assert "def main(A: float32[64, 48], b: float32[48], R: float32[64, 48])" in out
    assert "ramp(" in out and ", 16)" in out              # DEFAULT: vectors of 16
    rc, out, err = tensordsl("bench", "my_op.py:bias_relu", "--shape", "64,48",
                             "--rounds", "1")
    assert rc == 0, err
    assert out.splitlines()[0] == "my_op.py:bias_relu(64, 48)"
    assert float(out.splitlines()[1].split()[1]) > 0     # our time, in ms
    assert "no reference library" in out


def test_a_hand_schedule_and_several_arguments(write, tensordsl):
    # --shape sizes first, then --args values: plus_one(40, "float64")
    write("hand.py", HAND)
    rc, out, err = tensordsl("show", "hand.py:plus_one", "--shape", "40", "--args", "float64",
                             "--llvm")
    assert rc == 0, err
    assert "<8 x double>" in out
    rc, out, err = tensordsl("show", "hand.py:plus_one", "--shape", "40", "--args", "float64")
    assert rc == 0, err
    assert "def main(A: float64[40], B: float64[40])" in out
    # a fixed schedule has nothing to tune: said so, not a crash
    rc, out, err = tensordsl("tune", "hand.py:plus_one", "--shape", "40", "--args", "float32",
                             "--trials", "2")
    assert rc == 2 and "nothing to tune" in err and "Traceback" not in err


def test_a_function_against_the_contract_gets_the_contract(write, tensordsl):
    write("bad.py", """
        import tensordsl as td

        def one_arg(n):
            A = td.placeholder((n, n), name="A")
            return [A, td.compute((n, n), lambda i, j: A[i, j] * 2.0, name="B")]

        def only_output(n):
            A = td.placeholder((n,), name="A")
            return td.compute((n,), lambda i: A[i] * 2.0, name="B")

        def nothing(n):
            pass
    """)
    write("bad_schedule.py", """
        import tensordsl as td

        def f(n):
            A = td.placeholder((n,), name="A")
            return [A, td.compute((n,), lambda i: A[i] * 2.0, name="B")]

        def schedule(s, out):
            pass
    """)
    cases = [
        (["show", "bad.py:one_arg", "--shape", "8,8"], "one_arg(8, 8)"),
        (["tune", "bad.py:one_arg", "--shape", "8,8", "--trials", "1"], "one_arg(8, 8)"),
        (["tune", "bad.py:only_output", "--shape", "8", "--trials", "1"], "one tensor"),
        (["show", "bad.py:nothing", "--shape", "8"], "returned a NoneType"),
        (["bench", "bad.py:nothing", "--shape", "8"], "returned a NoneType"),
        (["tune", "bad_schedule.py:f", "--shape", "8", "--trials", "1"],
         "does not take (s, outs, config)"),
    ]
    for argv, what in cases:
        rc, out, err = tensordsl(*argv)
        assert rc == 2, (argv, err)
        assert "Traceback" not in err and err.count("\n") == 1, (argv, err)
        assert what in err, (argv, err)
        if "(s, outs, config)" not in what:
            assert "returns its tensors, the inputs first and the output last" in err
