"""Reads at indices taken from data, in every schedule position (found by the fuzzer)."""
import numpy as np
import pytest

import tensordsl as td


@pytest.mark.parametrize("rows", [0, 1, 5])
def test_producer_computed_at_a_consumer_that_gathers_from_it(rows):
    # S reads P at a row picked by I: the region of P one iteration needs is not an
    # interval of the loops, so P is computed whole there (bound inference once
    # allocated it at I.local[i], a tensor that did not exist yet at that point)
    n = td.var("n")
    X = td.placeholder((n, 3), name="X")
    I = td.placeholder((n,), dtype="int32", name="I")
    k = td.reduce_axis((0, 3), "k")
    P = td.compute((n, 1), lambda i, j: td.sum(X[i, k], axis=k), name="P")
    S = td.compute((n, 1), lambda i, j: P[I[i].astype("int64"), j] * 2.0, name="S")
    s = td.create_schedule(S.op)
    IL = s.cache_read(I, "local", [S])
    s[IL].compute_at(s[S], S.op.axis[1])
    s[P].compute_at(s[S], S.op.axis[0])
    f = td.build(s, [X, I, S])
    rng = np.random.default_rng(rows)
    x = rng.random((rows, 3), dtype="float32")
    ix = rng.integers(0, max(rows, 1), rows).astype("int32")
    out = np.full((rows, 1), np.nan, "float32")
    f(x, ix, out)
    np.testing.assert_allclose(out, 2 * x.sum(axis=1, keepdims=True)[ix], rtol=1e-6)


def test_a_checked_read_under_a_lazy_guard_in_a_vectorized_edge():
    # found by the long fuzz run: the index check sits under the guard of an inlined
    # packed stage, which is lane-dependent in the vectorized edge block; its scalar
    # error stores came out unconditional (a false "outside its extent" report)
    X0 = td.placeholder((1, 3), name="X0")
    I1 = td.placeholder((1,), dtype="int32", name="I1")
    S2 = td.compute((1, 3), lambda i, j: X0[I1[i].astype("int64"), j], name="S2")
    s = td.create_schedule(S2.op)
    packed = [s.pack(X0, 1, 1, [S2]), s.pack(I1, 0, 1, [S2])]
    i, j = S2.op.axis
    s[S2].reorder(j, i)
    outer, inner = s[S2].split(s[S2].fuse(j, i), factor=2)
    s[S2].vectorize(inner)
    for p in packed:
        s[p].compute_inline()
    f = td.build(s, [X0, I1, S2])
    x = np.random.default_rng(0).random((1, 3), dtype="float32")
    out = np.full((1, 3), np.nan, "float32")
    f(x, np.zeros(1, "int32"), out)
    np.testing.assert_array_equal(out, x)
    with pytest.raises(ValueError, match="at index 1 in dimension 0, outside its extent 1"):
        f(x, np.ones(1, "int32"), out)
