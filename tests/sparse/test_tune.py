"""Sparse operators tuned from the command line (``tensordsl tune spmm --random ...``,
``--matrix a.mtx``) and the records used by ``td.ops`` (issue 15).

Each tuning runs a few trials in real worker processes; the matrices are small. Which
configuration ``td.ops`` compiles with is seen by a spy on the template, and every
result is compared with scipy.sparse.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

import tensordsl as td
from schedules.cpu import sparse as templates
from schedules.cpu.space import space_for
from tensordsl import cli
from tensordsl.autotune import RecordDB, sparse_workload
from tensordsl.autotune.records import record_target
from tensordsl.sparse import ops
from tests.helpers import poisoned


@pytest.fixture
def spy(monkeypatch):
    """The configurations the sparse templates are called with, from a fresh kernel
    cache (a kernel compiled earlier in this process would not call its template)."""
    monkeypatch.setattr(ops, "_KERNELS", {})
    monkeypatch.setattr(ops, "_TUNED", {})
    seen: list = []
    for name, template in list(templates.TEMPLATES.items()):
        def recording(s, out, A, config=None, _name=name, _template=template):
            seen.append((_name, config))
            return _template(s, out, A, config)
        monkeypatch.setitem(templates.TEMPLATES, name, recording)
    return seen


def _random(rows, cols, density, seed):
    """The documented recipe of --random (README): scipy.sparse.random, seeded."""
    return sp.random(rows, cols, density, format="csr", dtype=np.float64,
                     random_state=np.random.default_rng(seed)).astype(np.float32)


def _best(db_path, op, A, dense_shapes):
    key = sparse_workload.sparse_key(op, A.shape, A.nnz, "float32", dense_shapes)
    with RecordDB(db_path) as db:
        return db.best(key, record_target("llvm"))


def test_tune_spmm_on_a_random_matrix_then_td_ops_uses_the_best_record(tmp_path, spy,
                                                                         capsys):
    db = tmp_path / "records.sqlite"
    # non-square, so that B's rows (the matrix's columns) differ from the result's
    assert cli.main(["tune", "spmm", "--random", "200,150,0.05,3", "--shape", "16",
                     "--trials", "3", "--db", str(db)]) == 0
    assert "best of spmm(csr 200x150 nnz=1500 float32, 150x16)" in capsys.readouterr().out
    A = _random(200, 150, 0.05, 3)
    best = _best(db, "spmm", A, [(150, 16)])
    assert best is not None and best["template"] == "spmm"
    assert '"random":[200,150,0.05,3]' in best["source"]      # what it was measured on
    B = np.random.default_rng(0).standard_normal((150, 16)).astype(np.float32)
    out = poisoned((200, 16))
    with td.autotune.apply_history_best(db):
        td.ops.spmm(A, B, out=out)
        assert spy == [("spmm", best["config"])]
        np.testing.assert_allclose(out, A @ B, rtol=1e-4, atol=1e-5)
        # an explicit schedule= wins over the record
        C = td.ops.spmm(A, B, schedule="rows")
        assert spy[-1] == ("spmm", {"schedule": "rows"})
        np.testing.assert_allclose(C, A @ B, rtol=1e-4, atol=1e-5)
    # outside the block the record is not in force: the defaults
    td.ops.spmm(A, B)
    assert spy[-1] == ("spmm", {})
    assert cli.main(["records", "list", "--db", str(db)]) == 0
    listed = capsys.readouterr().out
    assert "3 trials" in listed and "spmm(csr 200x150 nnz=1500 float32, 150x16)" in listed


def test_tune_spmv_on_a_matrix_market_file(tmp_path, spy, capsys):
    rng = np.random.default_rng(5)
    A = sp.random(120, 90, 0.08, format="csr", dtype=np.float32, random_state=rng)
    path = tmp_path / "a.mtx"
    scipy.io.mmwrite(str(path), A)
    db = tmp_path / "records.sqlite"
    assert cli.main(["tune", "spmv", "--matrix", str(path), "--trials", "3",
                     "--db", str(db)]) == 0
    best = _best(db, "spmv", A, [(90,)])
    assert best is not None and str(path) in best["source"]
    x = rng.standard_normal(90).astype(np.float32)
    out = poisoned((120,))
    with td.autotune.apply_history_best(db):
        td.ops.spmv(td.nd.sparse_array(A), x, out=out)
    assert spy == [("spmv", best["config"])]
    np.testing.assert_allclose(out, A @ x, rtol=1e-4, atol=1e-5)


def test_a_record_is_looked_up_once_per_key_and_nnz(tmp_path, spy, monkeypatch):
    """A hand-made record with every knob away from its default: applied to every matrix
    of that shape and nnz (the key), looked up once; another nnz has no record."""
    db_path = tmp_path / "records.sqlite"
    A1, A2 = _random(64, 48, 0.1, 1), _random(64, 48, 0.1, 2)
    assert A1.nnz == A2.nnz and (A1 != A2).nnz
    config = {"schedule": "nonzeros", "rows": 4, "prefetch": 8, "cols": 16}
    with RecordDB(db_path) as db:
        db.add(sparse_workload.sparse_key("spmm", A1.shape, A1.nnz, "float32", [(48, 40)]),
               record_target("llvm"), "spmm", config, "ok", seconds=1e-6)
    lookups = []
    real = sparse_workload.tuned_config
    monkeypatch.setattr(sparse_workload, "tuned_config",
                        lambda *a, **k: lookups.append(a) or real(*a, **k))
    B = np.random.default_rng(0).standard_normal((48, 40)).astype(np.float32)
    with td.autotune.apply_history_best(db_path):
        S1, S2 = td.nd.sparse_array(A1), td.nd.sparse_array(A2)
        for S, A in ((S1, A1), (S1, A1), (S2, A2)):
            np.testing.assert_allclose(td.ops.spmm(S, B), A @ B, rtol=1e-4, atol=1e-5)
        assert len(lookups) == 1 and spy == [("spmm", config)]
        A3 = _random(64, 48, 0.2, 1)
        np.testing.assert_allclose(td.ops.spmm(A3, B), A3 @ B, rtol=1e-4, atol=1e-5)
        assert len(lookups) == 2 and spy[-1] == ("spmm", {})


@pytest.mark.parametrize("op", sparse_workload.TUNABLE)
def test_configurations_from_each_space_compute_what_scipy_does(op, spy):
    """Two random points of each sparse template's space (the tuner's candidates)."""
    import random
    rng = random.Random(op)
    keep = np.ones(40, np.float32)
    keep[3] = 0      # an empty row
    A = (sp.diags(keep) @ _random(40, 30, 0.15, 7)).tocsr()
    A.eliminate_zeros()
    A.sort_indices()     # (as td.nd.sparse_array stores them: the values' order)
    rows = np.repeat(np.arange(40), np.diff(A.indptr))
    gen = np.random.default_rng(1)
    dense = {"spmv": [(30,)], "spmm": [(30, 24)], "sddmm": [(40, 24), (30, 24)],
             "sparse_mul": [(40, 30)], "sparse_softmax": []}[op]
    args = [gen.standard_normal(s).astype(np.float32) for s in dense]
    expected = {"spmv": lambda: A @ args[0], "spmm": lambda: A @ args[0],
                "sddmm": lambda: A.data * (args[0][rows] * args[1][A.indices]).sum(1),
                "sparse_mul": lambda: A.data * args[0][rows, A.indices],
                "sparse_softmax": lambda: _softmax_rows(A)}[op]()
    space = space_for(op)
    for _ in range(2):
        config = {k: rng.choice(v) for k, v in space.items()}
        f, tensors = ops.build(op, A.shape, "float32", dense, config)
        S = td.nd.sparse_array(A)
        n = len(tensors) - len(dense) - 1
        components = [S.component(t.name.split(".", 1)[1]) for t in tensors[:n]]
        out = poisoned(expected.shape)
        f(*components, *args, out)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5, err_msg=str(config))


def _softmax_rows(A):
    values = []
    for i in range(A.shape[0]):
        row = A.data[A.indptr[i]:A.indptr[i + 1]].astype(np.float64)
        e = np.exp(row - row.max()) if row.size else row
        values.append(e / e.sum() if row.size else row)
    return np.concatenate(values)


@pytest.mark.parametrize("argv, words", [
    (["spmm", "--random", "4096,0.01", "--shape", "64"], ["--random", "ROWS,COLS,DENSITY"]),
    (["spmm", "--random", "64,64,1.5", "--shape", "8"], ["--random", "'64,64,1.5'"]),
    (["spmm", "--random", "64,64,0.1,x", "--shape", "8"], ["--random"]),
    (["spmm", "--matrix", "/nonexistent/a.mtx", "--shape", "8"],
     ["--matrix", "no such file", "/nonexistent/a.mtx"]),
    # B's rows are the matrix's 30 columns, not its 40 rows
    (["spmm", "--random", "40,30,0.1", "--shape", "40,8"], ["--shape", "30x8", "40x30", "40x8"]),
    (["sddmm", "--random", "40,30,0.1", "--shape", "40,8", "--shape", "40,8"],
     ["--shape", "Y", "30x8"]),
    (["spmv", "--random", "40,30,0.1", "--shape", "40"], ["--shape", "x", "30"]),
    (["spmm", "--random", "40,30,0.1"], ["--shape", "width"]),
    (["spmm", "--shape", "64"], ["--matrix or --random"]),
    (["matmul", "--random", "40,30,0.1", "--shape", "8"], ["--random", "sparse operators"]),
    (["spmm", "--random", "40,30,0.1", "--matrix", "a.mtx", "--shape", "8"],
     ["--matrix and --random"]),
    (["spmv", "--random", "40,30,0.1", "--dtype", "int32"], ["--dtype", "int32"]),
    (["spmv", "--matrix", "a.mtx", "--power-law"], ["--power-law", "--random"]),
])
def test_bad_arguments_are_named(argv, words, tmp_path, capsys):
    assert cli.main(["tune", *argv, "--db", str(tmp_path / "r.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tensordsl tune: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err


def test_a_file_that_is_not_matrix_market_is_named(tmp_path, capsys):
    path = tmp_path / "a.mtx"
    path.write_text("not a matrix\n")
    assert cli.main(["tune", "spmv", "--matrix", str(path), "--db",
                     str(tmp_path / "r.sqlite")]) == 2
    err = capsys.readouterr().err
    assert "--matrix" in err and "Matrix Market" in err and str(path) in err


def test_power_law_rows_are_skewed_and_reproducible():
    matrix = sparse_workload.Matrix.random(2000, 1000, 0.01, seed=4, power_law=True)
    S = matrix.load("float32")
    lengths = np.diff(S.pos[1])
    assert abs(S.nnz - 20000) < 2000                   # about density * rows * cols
    assert lengths.max() > 10 * lengths.mean()         # a few long rows
    again = sparse_workload.power_law_matrix(2000, 1000, 0.01, 4)
    assert (again.indptr == S.pos[1]).all() and (again.indices == S.crd[1]).all()


@pytest.mark.parametrize("schedule", templates.SCHEDULES)
def test_the_measuring_worker_runs_each_spmv_schedule(schedule):
    """The kernels of a configuration read different arrays of the matrix (sliced rows:
    a derived layout); the worker hands each kernel the matrix, not one fixed list."""
    from tensordsl.autotune.worker import _run
    matrix = sparse_workload.Matrix.random(300, 200, 0.05, seed=2, power_law=True)
    w = sparse_workload.SparseWorkload("spmv", matrix, [(200,)])
    reply = _run(w, {"schedule": schedule}, repeat=2, min_time=0.0, references={})
    assert reply["status"] == "ok", reply
    S, x = w.arrays()
    f, shape, dtype = w.build({"schedule": schedule})
    out = poisoned(shape)
    f(S, x, out)
    np.testing.assert_allclose(out, S.to_scipy() @ x, rtol=1e-4, atol=1e-5)
