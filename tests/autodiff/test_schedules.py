"""Derived kernels under schedule primitives. An accumulated adjoint (a read through data
has no gather form) is a sum whose ``where`` reads the index tensor: the first such
reductions the schedules see, found by test_property's random schedules."""
import numpy as np
import pytest

import tensordsl as td

from .fd import ph


def _rfactored(s, y, factor):
    k = y.op.reduce_axis[0]
    _, inner = s[y].split(k, factor=factor)
    s.rfactor(y, inner)


@pytest.mark.parametrize("n,factor", [(1, 2), (5, 2), (6, 4)])
def test_rfactor_of_a_sum_whose_condition_reads_a_tensor(n, factor):
    """Split by a factor that does not divide the extent, then rfactor: the tail guard
    must be tested before the condition reads ``idx`` past its end (a BuildError now:
    rewrite.rfactor joins them with And, which evaluates both)."""
    x, idx = ph((n,), "x"), ph((n,), "idx", "int32")
    i = td.reduce_axis((0, n), "i")
    y = td.compute((4,), lambda j: td.sum(x[i], axis=i, where=idx[i] == j), name="y")
    s = td.create_schedule(y.op)
    _rfactored(s, y, factor)
    f = td.build(s, [x, idx, y])
    xv, iv = np.arange(1.0, n + 1), (np.arange(n) * 3 % 4).astype("int32")
    out = np.full(4, np.nan)
    f(xv, iv, out)
    expected = np.zeros(4)
    np.add.at(expected, iv, xv)
    np.testing.assert_array_equal(out, expected)


def test_rfactor_of_an_accumulated_adjoint(rng):
    x, idx = ph((7,), "x"), ph((5,), "idx", "int32")
    y = td.compute((5,), lambda i: x[idx[i]] * 0.5, name="y")
    (g,), head_t = td.vjp(y, [x])
    assert g.op.reduce_axis, "the adjoint of a read through data is expected to be a sum"
    s = td.create_schedule(g.op)
    _rfactored(s, g, 2)
    f = td.build(s, [x, idx, head_t, g])
    iv, head = np.array([6, 0, 6, 2, 6], "int32"), rng.standard_normal(5)
    out = np.full(7, np.nan)
    f(rng.standard_normal(7), iv, head, out)
    expected = np.zeros(7)
    np.add.at(expected, iv, 0.5 * head)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
