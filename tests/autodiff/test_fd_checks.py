"""The finite-difference checks themselves: they pass a hand-written adjoint and fail a
wrong one, so a passing autodiff test means something. (No autodiff here.)"""
import numpy as np
import pytest

import tensordsl as td

from .fd import Loss, assert_close, check_adjoints, elementwise_difference


def _product_of_neighbours():
    x = td.placeholder((5, 7), dtype="float64", name="x")
    y = td.compute((5, 6), lambda i, j: x[i, j] * x[i, j + 1], name="y")
    head = td.placeholder((5, 6), dtype="float64", name="head")
    return x, y, head


def _adjoint(x, head, wrong: float = 0.0):
    """d/dx[i, j] of sum(head * x[:, :-1] * x[:, 1:]), written by hand: x[i, j] is read
    as the left factor (j < 6) and as the right one (j > 0)."""
    def f(i, j):
        # (the clamps keep the unguarded index expressions in bounds for the checker)
        left = td.if_then_else(j < 6, head[i, td.minimum(j, 5)] * x[i, td.minimum(j + 1, 6)],
                               0.0)
        right = td.if_then_else(j > 0, head[i, td.maximum(j - 1, 0)]
                                * x[i, td.maximum(j - 1, 0)], 0.0)
        return left + right + wrong * x[i, j]
    return td.compute((5, 7), f, name="x.adjoint")


def _values(rng, x, head):
    return {x: rng.standard_normal((5, 7)), head: rng.standard_normal((5, 6))}


def test_a_correct_adjoint_passes(rng):
    x, y, head = _product_of_neighbours()
    values = _values(rng, x, head)
    (g,) = check_adjoints(y, [x], [_adjoint(x, head)], values, values[head], rng)
    h, a = values[head], values[x]
    expected = np.zeros((5, 7))
    expected[:, :6] += h * a[:, 1:]
    expected[:, 1:] += h * a[:, :6]
    np.testing.assert_allclose(g, expected, rtol=1e-12)


@pytest.mark.parametrize("elementwise", [False, True])
def test_a_slightly_wrong_adjoint_fails(rng, elementwise):
    x, y, head = _product_of_neighbours()
    values = _values(rng, x, head)
    with pytest.raises(AssertionError, match="adjoint of x"):
        check_adjoints(y, [x], [_adjoint(x, head, wrong=1e-3)], values, values[head], rng,
                       directions=0 if elementwise else 3, elementwise=elementwise)


def test_a_skipped_store_fails_the_comparison():
    got = np.array([1.0, np.nan, 3.0])
    with pytest.raises(AssertionError, match="not finite"):
        assert_close(got, np.array([1.0, 2.0, 3.0]), "poisoned")


def test_elementwise_difference_of_a_quadratic(rng):
    x = td.placeholder((3, 4), dtype="float64", name="x")
    y = td.compute((3, 4), lambda i, j: x[i, j] * x[i, j] * 0.5, name="y")
    head = rng.standard_normal((3, 4))
    values = {x: rng.standard_normal((3, 4))}
    np.testing.assert_allclose(elementwise_difference(Loss(y, head), values, x),
                               head * values[x], rtol=1e-8)
