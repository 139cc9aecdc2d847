"""td.stop_gradient: a tensor autodiff treats as a constant; softmax's stability shift
is one, so its derived kernels need no argmax."""
from __future__ import annotations

import numpy as np

import kernels.dense as D
import tensordsl as td
from tensordsl.autodiff.graph import topological


def test_no_derivative_flows_through_a_stopped_tensor():
    x = td.placeholder((7,), "float64", "x")
    frozen = td.stop_gradient(x)
    y = td.compute((7,), lambda i: x[i] * frozen[i], name="y")
    gx = td.grad(y, x)
    ty, tx = td.jvp(y, x)
    xs, ts = np.random.rand(7), np.random.rand(7)
    g, = td.build_program([x], [gx])(xs)
    t, = td.build_program([x, tx], [ty])(xs, ts)
    np.testing.assert_allclose(g, xs)           # d(x * c)/dx = c, not 2x
    np.testing.assert_allclose(t, xs * ts)
    y_value, = td.build_program([x], [frozen])(xs)
    np.testing.assert_array_equal(y_value, xs)  # the value is x itself


def test_softmax_gradient_has_no_argmax_and_is_right():
    x = td.placeholder((4, 9), "float64", "x")
    y = D.softmax(x)
    (gx,), head = td.vjp(y, [x])
    assert not any("argmax" in op.name for op in topological([gx]))
    xs, hs = np.random.rand(4, 9), np.random.rand(4, 9)
    g, = td.build_program([x, head], [gx])(xs, hs)
    p = np.exp(xs - xs.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(g, p * (hs - (p * hs).sum(1, keepdims=True)), rtol=1e-12)
