"""Tuple reductions: each output is differentiated as the sum, max or min it is of its
own component (an argmax's value is a max); a product is refused by name."""
from __future__ import annotations

import numpy as np
import pytest

import tensordsl as td


def _x():
    return td.placeholder((4, 6), "float64", "x"), td.reduce_axis((0, 6), "r")


def test_independent_components_of_a_tuple_reduction():
    x, r = _x()
    pair = td.comm_reducer(lambda a, b: (a[0] + b[0], td.maximum(a[1], b[1])),
                           lambda d0, d1: (td.const(0, d0), td.min_value(d1)),
                           name="sum_and_max")
    total, top = td.compute((4,), lambda i: pair((x[i, r] * x[i, r], x[i, r]), axis=r),
                            name="sm")
    y = td.compute((4,), lambda i: total[i] + 3 * top[i], name="y")
    xs = np.random.default_rng(0).random((4, 6))
    g, = td.build_program([x], [td.grad(y, x)])(xs)
    expected = 2 * xs
    expected[np.arange(4), xs.argmax(1)] += 3
    np.testing.assert_allclose(g, expected)


def test_the_value_of_an_argmax_reduction_is_a_max():
    x, r = _x()
    argmax = td.comm_reducer(
        lambda a, b: (td.select(a[1] >= b[1], a[0], b[0]), td.maximum(a[1], b[1])),
        lambda d0, d1: (td.const(-1, d0), td.min_value(d1)), name="argmax")
    _, value = td.compute((4,), lambda i: argmax((r.var, x[i, r]), axis=r), name="am")
    xs = np.random.default_rng(1).random((4, 6))
    g, = td.build_program([x], [td.grad(value, x)])(xs)
    expected = np.zeros_like(xs)
    expected[np.arange(4), xs.argmax(1)] = 1
    np.testing.assert_array_equal(g, expected)


def test_a_product_reduction_is_refused_by_name():
    x, r = _x()
    product = td.comm_reducer(lambda a, b: a * b, lambda d: td.const(1, d), name="product")
    p = td.compute((4,), lambda i: product(x[i, r], axis=r), name="p")
    with pytest.raises(td.TensorDSLError, match="'product'"):
        td.grad(p, x)
