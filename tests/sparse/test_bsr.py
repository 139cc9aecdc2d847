"""SpMV and SpMM on BSR operands (blocks kept, not converted to CSR) against scipy:
random block shapes, sizes, densities, empty block rows, an empty matrix, one dense
block row; both schedules; results written over NaN."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels.sparse as K
import tensordsl as td
from tests.helpers import poisoned


@st.composite
def bsr_matrices(draw):
    r, c = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    mb, nb = draw(st.integers(0, 9)), draw(st.integers(1, 9))
    density = draw(st.sampled_from([0.0, 0.2, 0.6, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    mask = rng.random((mb, nb)) < density
    if mb and draw(st.booleans()):
        mask[rng.integers(mb)] = True                 # one dense block row
    dense = np.kron(mask, np.ones((r, c))) * rng.standard_normal((mb * r, nb * c))
    return sp.bsr_matrix(dense.astype("float32"), blocksize=(r, c)), rng


@settings(max_examples=30, deadline=None)
@given(bsr_matrices(), st.sampled_from(["rows", "nonzeros"]), st.integers(1, 20))
def test_blocked_products_match_scipy(case, schedule, f):
    a, rng = case
    m, n = a.shape
    x = rng.standard_normal(n).astype("float32")
    b = rng.standard_normal((n, f)).astype("float32")
    y = td.ops.spmv(a, x, schedule=schedule, out=poisoned((m,)))
    np.testing.assert_allclose(y, a @ x, rtol=1e-5, atol=1e-5)
    C = td.ops.spmm(a, b, schedule=schedule, out=poisoned((m, f)))
    np.testing.assert_allclose(C, a @ b, rtol=1e-5, atol=1e-5)


def test_the_blocks_are_kept_and_their_rows_stay_together():
    A = td.sparse_placeholder((8, 12), td.Format.named("bsr", block=(2, 3)), name="A")
    B = td.placeholder((12, 16), "float32", "B")
    C = K.spmm(A, B)
    assert [int(d.value) for d in C.shape] == [4, 2, 16]      # the rows by block
    s = td.create_schedule(C.op)
    from schedules.cpu.sparse import schedule_spmm
    schedule_spmm(s, C, A)
    text = str(td.lower(s, [*A.placeholders(), B, C], check_indices=False))
    assert "A.vals: float32[A.nnz1, 2, 3]" in text
    S = td.nd.sparse_array(sp.bsr_matrix(np.ones((8, 12), "float32"), blocksize=(2, 3)))
    assert S.format.name == "bsr"          # td.ops takes it as it is


def test_other_operators_convert_a_bsr_operand():
    a = sp.bsr_matrix(np.eye(6, dtype="float32"), blocksize=(2, 2))
    got = td.ops.sddmm(a, np.ones((6, 3), "float32"), np.ones((6, 3), "float32"))
    np.testing.assert_allclose(got.toarray(), 3 * np.eye(6))


def test_a_blocked_format_that_is_not_bsr_is_refused_by_the_definition():
    fmt = td.Format(["compressed", "compressed", "dense", "dense"], block=(2, 2))
    A = td.sparse_placeholder((4, 4), fmt, name="A")
    with pytest.raises(ValueError, match="expected a CSR or BSR operand"):
        K.spmv(A, td.placeholder((4,), "float32", "x"))
