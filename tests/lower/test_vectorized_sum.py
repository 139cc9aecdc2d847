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
