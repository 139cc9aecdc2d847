"""The sparse compute definitions (kernels/sparse.py) with their CPU templates, both
schedules, against scipy.sparse: random shapes and densities, empty rows, an empty
matrix, one dense row. The components are built from scipy here, so these tests do not
depend on the runtime arrays."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels.sparse as K
import tensordsl as td
from schedules.cpu.sparse import SCHEDULES, TEMPLATES, definition
from tensordsl.sparse.sliced import sliced_ell
from tests.helpers import poisoned


def _components(M) -> dict:
    M = sp.csr_matrix(M)
    M.sort_indices()
    pos, crd = M.indptr.astype("int32"), M.indices.astype("int32")
    sliced = sliced_ell(pos, crd, M.data)
    return {"pos1": pos, "crd1": crd, "vals": M.data,
            "rows1": np.repeat(np.arange(M.shape[0], dtype="int32"), np.diff(M.indptr)),
            **{f"{k}1": a for k, a in sliced.items()}}


@functools.cache
def _kernel(name, shape, dense_shapes, schedule, knobs=()):
    A = td.sparse_placeholder(shape, "csr", "float32", name="A")
    dense = [td.placeholder(s, "float32", f"d{k}") for k, s in enumerate(dense_shapes)]
    config = {"schedule": schedule, **dict(knobs)}
    out = getattr(K, definition(name, config))(A, *dense)
    s = td.create_schedule(out.op)
    TEMPLATES[name](s, out, A, config)
    f = td.build(s, [*A.placeholders(), *dense, out], check_indices=False)
    return f, [t.name.split(".", 1)[1] for t in A.placeholders()], out


def run(name, M, *dense, schedule="rows", **knobs):
    M = sp.csr_matrix(M, dtype="float32")
    M.sort_indices()
    f, names, out = _kernel(name, M.shape, tuple(d.shape for d in dense), schedule,
                            tuple(sorted(knobs.items())))
    comps = _components(M)
    shape = (M.nnz,) if name in ("sddmm", "sparse_mul", "sparse_softmax") else \
        tuple(int(d.value) for d in out.shape)
    result = poisoned(shape)
    f(*[comps[n] for n in names], *dense, result)
    return M, result


def _matrix(rng, m, n, density, kind):
    M = sp.random(m, n, density=density, format="lil", dtype="float32", random_state=rng)
    if kind == "dense_row" and m:
        M[rng.integers(m), :] = rng.random(n).astype("float32") + 0.5
    if kind == "empty":
        M = sp.lil_matrix((m, n), dtype="float32")
    return sp.csr_matrix(M)


matrices = st.tuples(st.integers(0, 40), st.integers(1, 40), st.sampled_from([0.0, 0.05, 0.3, 1.0]),
                     st.sampled_from(["random", "dense_row", "empty"]), st.integers(0, 2**31))


@settings(max_examples=25, deadline=None)
@given(matrices, st.sampled_from(SCHEDULES), st.integers(1, 20),
       st.sampled_from([1, 4, 8, 16]), st.sampled_from([0, 1]))
def test_spmv_and_spmm_match_scipy(spec, schedule, f, partials, gather):
    m, n, density, kind, seed = spec
    rng = np.random.default_rng(seed)
    M = _matrix(rng, m, n, density, kind)
    x = rng.random(n).astype("float32")
    B = rng.random((n, f)).astype("float32")
    M, y = run("spmv", M, x, schedule=schedule, partials=partials, gather=gather)
    np.testing.assert_allclose(y, M @ x, rtol=1e-5, atol=1e-5)
    if schedule == "sliced":      # (SpMV's alone)
        return
    M, C = run("spmm", M, B, schedule=schedule)
    np.testing.assert_allclose(C, M @ B, rtol=1e-5, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(matrices, st.sampled_from([1, 3, 4, 8, 16, 32, 40, 64]), st.sampled_from([1, 4, 16]))
def test_pattern_results_match_scipy(spec, f, block):
    m, n, density, kind, seed = spec
    rng = np.random.default_rng(seed)
    M = _matrix(rng, m, n, density, kind)
    X = rng.random((m, f)).astype("float32")
    Y = rng.random((n, f)).astype("float32")
    D = rng.random((m, n)).astype("float32")
    M, got = run("sddmm", M, X, Y, block=block)
    rows = np.repeat(np.arange(m), np.diff(M.indptr))
    np.testing.assert_allclose(got, M.data * (X[rows] * Y[M.indices]).sum(1), rtol=1e-5,
                               atol=1e-5)
    M, got = run("sparse_mul", M, D)
    np.testing.assert_allclose(got, M.data * D[rows, M.indices], rtol=1e-6)
    M, got = run("sparse_softmax", M)
    expected = np.empty_like(M.data)
    for i in range(m):
        lo, hi = M.indptr[i], M.indptr[i + 1]
        if hi > lo:
            e = np.exp(M.data[lo:hi] - M.data[lo:hi].max())
            expected[lo:hi] = e / e.sum()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_the_nonzero_split_is_printed_and_balances_a_skewed_matrix():
    A = td.sparse_placeholder((64, 64), "csr", name="A")
    x = td.placeholder((64,), "float32", "x")
    y = K.spmv(A, x)
    s = td.create_schedule(y.op)
    s[y].parallel(y.op.axis[0], balance=A.pos[1])
    assert "balanced by A.pos1[i]" in str(td.lower(s, [*A.placeholders(), x, y]))
    # one row holds most of the entries: every row still computed once
    rng = np.random.default_rng(3)
    M = sp.random(64, 64, density=0.02, format="lil", dtype="float32", random_state=rng)
    M[5, :] = 1.0
    M, got = run("spmv", sp.csr_matrix(M), np.arange(64, dtype="float32"),
                 schedule="nonzeros")
    np.testing.assert_allclose(got, M @ np.arange(64, dtype="float32"), rtol=1e-6)


def test_balance_needs_a_1d_tensor_on_an_unsplit_axis():
    A = td.sparse_placeholder((8, 8), "csr", name="A")
    x = td.placeholder((8,), "float32", "x")
    y = K.spmv(A, x)
    s = td.create_schedule(y.op)
    io, _ = s[y].split(y.op.axis[0], factor=2)
    with pytest.raises(td.ScheduleError, match="balance needs one of the stage's own axes"):
        s[y].parallel(io, balance=A.pos[1])
    s = td.create_schedule(y.op)
    with pytest.raises(td.ScheduleError, match="balance must be a 1-d tensor"):
        s[y].parallel(y.op.axis[0], balance=x.op)
    with pytest.raises(td.ScheduleError, match=r"balance must hold 9 weights \(one more "
                                               r"than the 8 iterations\), got 8"):
        s[y].parallel(y.op.axis[0], balance=x)


def test_a_sparse_operand_of_another_format_or_shape_is_refused_by_name():
    x = td.placeholder((8,), "float32", "x")
    with pytest.raises(ValueError, match="spmv: expected a CSR (or BSR )?operand"):
        K.spmv(td.sparse_placeholder((8, 8), "coo", name="A"), x)
    with pytest.raises(ValueError, match=r"spmv: x must have shape \(6,\)"):
        K.spmv(td.sparse_placeholder((8, 6), "csr", name="A"), x)
    with pytest.raises(TypeError, match="must be a td.sparse_placeholder"):
        K.spmv(x, x)


def test_spmm_fetching_gathered_rows_ahead_keeps_its_accumulators_and_results():
    # the prefetch of B[crd[q + d], :] is clamped to the row's last entry (no read of
    # crd outside the row) and leaves the row's sums in registers
    A = td.sparse_placeholder((30, 20), "csr", name="A")
    B = td.placeholder((20, 24), "float32", "B")
    C = K.spmm(A, B)
    s = td.create_schedule(C.op)
    TEMPLATES["spmm"](s, C, A, {"prefetch": 3})
    text = str(td.lower(s, [*A.placeholders(), B, C], check_indices=False))
    assert "prefetch(B[" in text and "min(A.q1 + 3, " in text
    assert "spmm.acc0" in text
    f = td.build(s, [*A.placeholders(), B, C], check_indices=False)
    rng = np.random.default_rng(4)
    M = sp.random(30, 20, density=0.3, format="csr", dtype="float32", random_state=rng)
    b = rng.random((20, 24)).astype("float32")
    out = poisoned((30, 24))
    comps = _components(M)
    f(comps["pos1"], comps["crd1"], comps["vals"], b, out)
    np.testing.assert_allclose(out, M @ b, rtol=1e-5, atol=1e-6)


def test_rfactor_of_a_sparse_rows_axis_vectorizes_it_with_a_masked_tail():
    # regression: the factored stage reads pos in its body (the bound of the axis it
    # keeps); pos was not a stage of the schedule, and lowering failed to find it
    A = td.sparse_placeholder((40, 50), "csr", name="A")
    x = td.placeholder((50,), "float32", "x")
    y = K.spmv(A, x)
    s = td.create_schedule(y.op)
    (q,) = y.op.reduce_axis
    _, qi = s[y].split(q, factor=8)
    partial = s[s.rfactor(y, qi, factor_axis=1)]
    row, lane = partial.op.axis
    partial.reorder(row, *partial.op.reduce_axis, lane)
    partial.vectorize(lane)
    f = td.build(s, [*A.placeholders(), x, y], check_indices=False)
    rng = np.random.default_rng(5)
    M = _matrix(rng, 40, 50, 0.3, "dense_row")
    comps = _components(M)
    xv = rng.random(50).astype("float32")
    out = poisoned((40,))
    f(comps["pos1"], comps["crd1"], comps["vals"], xv, out)
    np.testing.assert_allclose(out, M @ xv, rtol=1e-5, atol=1e-6)


def test_a_rows_ragged_end_sums_in_registers_not_through_memory():
    # regression: the masked last vector of a row (gathered SpMV) updated the factored
    # temporary with masked stores, between the whole vectors' register sums and the
    # lanes' sum: a store-forwarding stall per row (SpMV 1.4x slower). Its sums now go
    # to a register accumulator by a select, folded into the temporary unmasked
    A = td.sparse_placeholder((40, 50), "csr", name="A")
    x = td.placeholder((50,), "float32", "x")
    y = K.spmv(A, x)
    s = td.create_schedule(y.op)
    TEMPLATES["spmv"](s, y, A, {"partials": 8, "gather": 1})
    text = str(td.lower(s, [*A.placeholders(), x, y], check_indices=False))
    assert text.count("spmv.rf.acc[ramp(0, 1, 8)] = x8(0.0f)") >= 2, text
    assert "spmv.rf.acc[ramp(0, 1, 8)] = select(" in text, text
    assert "spmv.rf[ramp(0, 1, 8)] = (spmv.rf" not in text, text


def test_a_result_row_is_stored_once_from_its_registers():
    # SpMM's row of C, set to zero vector by vector before its entries' loop, was
    # stored twice: the zeros, then C + the registers (read back); the run of stores
    # initializing the whole reduction now goes, and the registers are stored as they are
    A = td.sparse_placeholder((40, 50), "csr", name="A")
    B = td.placeholder((50, 64), "float32", "B")
    C = K.spmm(A, B)
    s = td.create_schedule(C.op)
    TEMPLATES["spmm"](s, C, A, {"schedule": "rows"})
    text = str(td.lower(s, [*A.placeholders(), B, C], check_indices=False))
    stores = [line.strip() for line in text.splitlines() if line.strip().startswith("spmm[")]
    assert stores and all(line.split(" = ")[1].startswith("spmm.acc") for line in stores), text
    assert "prefetch(spmm[" not in text, text
    M, out = run("spmm", _matrix(np.random.default_rng(3), 40, 50, 0.2, "random"),
                 np.random.default_rng(4).random((50, 64)).astype("float32"))
    np.testing.assert_allclose(out, M @ np.random.default_rng(4).random((50, 64))
                               .astype("float32"), rtol=1e-5, atol=1e-5)


def test_sddmm_sums_a_blocks_dot_products_together():
    # the dots of 16 stored entries in one transpose-and-add network (a regression of
    # the way there: splitting the positions loop under split rows left the run's
    # length in terms of the unsplit rows axis, "p.run is used but cannot be bound")
    A = td.sparse_placeholder((40, 30), "csr", name="A")
    X = td.placeholder((40, 64), "float32", "X")
    Y = td.placeholder((30, 64), "float32", "Y")
    out = K.sddmm(A, X, Y)
    s = td.create_schedule(out.op)
    TEMPLATES["sddmm"](s, out, A, {"block": 16})
    text = str(td.lower(s, [*A.placeholders(), X, Y, out], check_indices=False))
    assert "= vector_sums(" in text, text
    assert "A.rows1[" not in text, text          # the row is the runs loop's
