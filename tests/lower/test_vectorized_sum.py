"""A vectorized reduction axis of a sum: the lanes added as a tree (``vector_sum``)
where the loop's body is ``x[i] = x[i] + f(k)``; elsewhere (masked tails, lane counts
that are not powers of two) a loop, as before. Against numpy."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl as td
from tests.helpers import poisoned


def _row_sums(width: int, lanes: int, dtype: str):
    A = td.placeholder((37, width), dtype, "A")
    k = td.reduce_axis((0, width), "k")
    B = td.compute((37,), lambda i: td.sum(A[i, k], axis=k), name="B")
    s = td.create_schedule(B.op)
    ko, ki = s[B].split(k, factor=lanes)
    s[B].vectorize(ki)
    return s, A, B


@pytest.mark.parametrize("width, lanes, dtype, tree", [
    (64, 16, "float32", True), (48, 8, "float64", True), (64, 16, "int32", True),
    (36, 12, "float32", False),       # 12 lanes: not a power of two, a loop
    (50, 16, "float32", True),        # the whole vectors a tree, the ragged tail a loop
])
def test_vectorized_sums_match_numpy(width, lanes, dtype, tree):
    s, A, B = _row_sums(width, lanes, dtype)
    text = str(td.lower(s, [A, B]))
    assert ("vector_sum" in text) == tree
    f = td.build(s, [A, B])
    rng = np.random.default_rng(0)
    a = (rng.integers(-9, 9, (37, width)) if dtype == "int32" else
         rng.standard_normal((37, width))).astype(dtype)
    out = poisoned((37,), dtype)
    f(a, out)
    if dtype == "int32":
        np.testing.assert_array_equal(out, a.sum(1))
    else:
        np.testing.assert_allclose(out, a.astype("float64").sum(1), rtol=1e-5, atol=1e-5)


def test_other_reductions_still_need_rfactor():
    A = td.placeholder((8, 16), "float32", "A")
    k = td.reduce_axis((0, 16), "k")
    B = td.compute((8,), lambda i: td.max(A[i, k], axis=k), name="B")
    s = td.create_schedule(B.op)
    with pytest.raises(td.ScheduleError, match="cannot vectorize reduction axis 'k'"):
        s[B].vectorize(k)


def test_a_dot_over_several_registers_is_one_multiply_then_fused_adds():
    # regression (SDDMM's dot per stored entry): 64 lanes were 4 multiplies and 3 adds
    # before the tree, and the sum started as 0 + ...; now the registers are folded by
    # fused multiply-adds and the sum is stored directly
    A = td.placeholder((40, 64), "float32", "A")
    B = td.placeholder((40, 64), "float32", "B")
    k = td.reduce_axis((0, 64), "k")
    C = td.compute((40,), lambda i: td.sum(A[i, k] * B[39 - i, k], axis=k), name="C")
    s = td.create_schedule(C.op)
    s[C].vectorize(k)
    text = str(td.lower(s, [A, B, C]))
    assert "C[i] = vector_sum(" in text and "C[i] = 0.0f" not in text, text
    f = td.build(s, [A, B, C])
    assert "vfmadd" in f.get_source("asm")
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal((40, 64)).astype("float32") for _ in range(2))
    out = poisoned((40,))
    f(a, b, out)
    np.testing.assert_allclose(out, (a * b[::-1]).sum(1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows, block, width, dtype", [
    (48, 16, 64, "float32"), (37, 16, 64, "float32"),     # a ragged last block: guarded
    (64, 32, 16, "float32"),                              # more sums than a register's lanes
    (20, 4, 8, "float64"), (24, 8, 4, "float32"),
])
def test_a_block_of_whole_axis_sums_is_one_network(rows, block, width, dtype):
    A = td.placeholder((rows, width), dtype, "A")
    B = td.placeholder((rows, width), dtype, "B")
    k = td.reduce_axis((0, width), "k")
    C = td.compute((rows,), lambda i: td.sum(A[i, k] * B[rows - 1 - i, k], axis=k), name="C")
    D = td.compute((rows,), lambda i: C[i] * 2.0, name="D")
    s = td.create_schedule(D.op)
    io, ii = s[D].split(D.op.axis[0], factor=block)
    s[C].compute_at(s[D], io)
    s[C].vectorize(C.op.reduce_axis[0])
    s[C].unroll(C.op.axis[0])
    text = str(td.lower(s, [A, B, D]))
    assert "vector_sums(" in text, text
    f = td.build(s, [A, B, D])
    rng = np.random.default_rng(7)
    a, b = (rng.standard_normal((rows, width)).astype(dtype) for _ in range(2))
    out = poisoned((rows,), dtype)
    f(a, b, out)
    np.testing.assert_allclose(out, 2 * (a * b[::-1]).sum(1), rtol=1e-5, atol=1e-5)
