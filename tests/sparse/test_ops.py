"""td.ops's sparse operators: scipy.sparse and td.nd sparse arrays in, numpy arrays or a
matrix with the operand's pattern out (of the input's kind), both schedules, against
scipy; a malformed structure is a ValueError before any generated code runs, never a
crash (in a child process)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

import tensordsl as td


def _matrix(m=60, n=45, density=0.1, seed=0):
    return sp.random(m, n, density=density, format="csr", dtype=np.float32, random_state=seed)


@pytest.mark.parametrize("schedule", ["rows", "nonzeros"])
def test_spmv_spmm_on_scipy_and_sparse_arrays(schedule):
    M = _matrix()
    rng = np.random.default_rng(1)
    x = rng.random(45).astype("float32")
    B = rng.random((45, 12)).astype("float32")
    for A in (M, td.nd.sparse_array(M), sp.csc_matrix(M), td.nd.sparse_array(M, "coo")):
        np.testing.assert_allclose(td.ops.spmv(A, x, schedule=schedule), M @ x, rtol=1e-5)
        np.testing.assert_allclose(td.ops.spmm(A, B, schedule=schedule), M @ B, rtol=1e-5)


def test_pattern_results_keep_the_pattern_and_the_inputs_kind():
    M = _matrix(seed=2)
    rng = np.random.default_rng(3)
    X, Y = rng.random((60, 8)).astype("float32"), rng.random((45, 8)).astype("float32")
    got = td.ops.sddmm(M, X, Y)
    assert isinstance(got, sp.spmatrix) and got.nnz == M.nnz
    np.testing.assert_allclose(got.toarray(), M.multiply(X @ Y.T).toarray(), rtol=1e-5)
    assert isinstance(td.ops.sddmm(sp.csr_array(M), X, Y), sp.sparray)
    S = td.nd.sparse_array(M)
    D = rng.random((60, 45)).astype("float32")
    mul = td.ops.sparse_mul(S, D)
    assert type(mul).__name__ == "SparseArray"
    np.testing.assert_allclose(mul.to_dense(), M.multiply(D).toarray(), rtol=1e-6)
    soft = td.ops.sparse_softmax(S).to_scipy()
    sums = np.asarray(soft.sum(axis=1)).ravel()
    np.testing.assert_allclose(sums[np.diff(M.indptr) > 0], 1.0, rtol=1e-5)


def test_wrong_operands_are_named():
    M = _matrix()
    with pytest.raises(TypeError, match="spmv: dense operand 1 must be float32"):
        td.ops.spmv(M, np.ones(45))
    with pytest.raises(ValueError, match=r"spmv: x must have shape \(45,\)"):
        td.ops.spmv(M, np.ones(44, np.float32))
    with pytest.raises(ValueError, match="schedule must be one of rows, nonzeros"):
        td.ops.spmv(M, np.ones(45, np.float32), schedule="cols")


MALFORMED = {
    "crd out of range": "A.indices[3] = 10 ** 6",
    "pos not monotone": "A.indptr[5] = A.indptr[6] + 1",
    "pos ends short": "A.indptr[-1] -= 1",
    "negative column": "A.indices[0] = -3",
}


@pytest.mark.parametrize("damage", list(MALFORMED))
def test_a_malformed_structure_is_a_value_error_not_a_crash(damage):
    code = textwrap.dedent(f"""
        import numpy as np, scipy.sparse as sp, tensordsl as td
        A = sp.random(60, 45, density=0.1, format="csr", dtype=np.float32, random_state=0)
        A.has_sorted_indices = True      # taken as it is
        {MALFORMED[damage]}
        try:
            td.ops.spmv(A, np.ones(45, np.float32))
        except ValueError as e:
            print("ValueError", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ValueError"), out.stdout + out.stderr[-2000:]


def test_out_takes_the_dense_result_or_the_patterns_values():
    M = _matrix(seed=4)
    x = np.ones(45, np.float32)
    y = np.full(60, np.nan, np.float32)
    assert td.ops.spmv(M, x, out=y) is y
    np.testing.assert_allclose(y, M @ x, rtol=1e-5)
    vals = np.full(M.nnz, np.nan, np.float32)
    got = td.ops.sparse_softmax(td.nd.sparse_array(M), out=vals)
    assert got.vals is vals or np.shares_memory(got.vals, vals)
    with pytest.raises(ValueError, match=r"spmv: out= must be a contiguous, aligned float32 array of "
                                         r"shape \(60,\)"):
        td.ops.spmv(M, x, out=np.empty(59, np.float32))
    with pytest.raises(TypeError, match="spmm\\(\\): missing a required argument: 'b'"):
        td.ops.spmm(M)


def test_repeated_calls_on_a_sparse_array_check_what_changed():
    # a repeated call on a td.nd sparse array skips building the kernel's key; what
    # the key held (dense shapes, dtypes, layout, schedule) is still checked each call
    M = _matrix(seed=4)
    S = td.nd.sparse_array(M)
    rng = np.random.default_rng(5)
    x = rng.random(45).astype("float32")
    # new x each call: a kernel that stored nothing would leave a freed result's values
    for x_k in (x, rng.random(45).astype("float32"), rng.random(45).astype("float32")):
        np.testing.assert_allclose(td.ops.spmv(S, x_k), M @ x_k, rtol=1e-5)
    assert S.__dict__.get("_repeat"), "the second call did not take the repeat path"
    with pytest.raises(ValueError, match=r"spmv: x must have shape \(45,\)"):
        td.ops.spmv(S, np.ones(44, np.float32))
    with pytest.raises(TypeError, match="spmv: dense operand 1 must be float32"):
        td.ops.spmv(S, x.astype("float64"))
    strided = rng.random(90).astype("float32")[::2]
    np.testing.assert_allclose(td.ops.spmv(S, strided), M @ strided, rtol=1e-5)
    unaligned = np.zeros(45 * 4 + 1, np.uint8)[1:].view(np.float32)
    unaligned[:] = x
    assert not unaligned.flags.aligned
    np.testing.assert_allclose(td.ops.spmv(S, unaligned), M @ x, rtol=1e-5)
    np.testing.assert_allclose(td.ops.spmv(S, x, schedule="nonzeros"), M @ x, rtol=1e-5)
    X, Y = rng.random((60, 8)).astype("float32"), rng.random((45, 8)).astype("float32")
    for scale in (1.0, 2.0):
        X = X * np.float32(scale)
        got = td.ops.sddmm(S, X, Y)
        assert type(got).__name__ == "SparseArray"
        np.testing.assert_allclose(got.to_dense(), M.multiply(X @ Y.T).toarray(), rtol=1e-5)
