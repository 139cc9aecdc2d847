"""td.build_program: a graph cut into kernels, against numpy; and the MLP's derived
gradient and Hessian-vector product run as programs, against finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import kernels.dense as D
import tensordsl as td


def _mlp(batch=6, features=5, hidden=4, classes=3, dtype="float64"):
    x = td.placeholder((batch, features), dtype, "x")
    target = td.placeholder((batch, classes), dtype, "target")
    w1 = td.placeholder((hidden, features), dtype, "w1")
    b1 = td.placeholder((hidden,), dtype, "b1")
    w2 = td.placeholder((classes, hidden), dtype, "w2")
    h = D.dense(x, w1, b1)
    a = td.compute(h.shape, lambda i, j: td.tanh(h[i, j]), name="a")
    logp = D.log_softmax(D.dense(a, w2))
    nll = td.compute(logp.shape, lambda i, j: -target[i, j] * logp[i, j], name="nll")
    return [x, target], [w1, b1, w2], D.reduce_sum(nll)


def _mlp_numpy(x, target, w1, b1, w2):
    a = np.tanh(x @ w1.T + b1)
    z = a @ w2.T
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -(target * logp).sum()


def _arrays(tensors, rng):
    return [rng.standard_normal([int(d.value) for d in t.shape]) for t in tensors]


def test_program_cuts_at_reductions_and_matches_numpy():
    data, params, loss = _mlp()
    program = td.build_program([*data, *params], [loss])
    names = [k.writes[0].op.name for k in program.kernels]
    assert "a" in names            # tanh is read inside the next matmul: materialized
    rng = np.random.default_rng(0)
    arrays = _arrays([*data, *params], rng)
    (value,) = program(*arrays)
    np.testing.assert_allclose(value[0], _mlp_numpy(*arrays), rtol=1e-12)


def test_program_gradient_and_hvp_of_the_mlp_match_finite_differences():
    data, params, loss = _mlp()
    grads = td.grad(loss, params)
    hv, vs = td.hvp(loss, params)
    grad_program = td.build_program([*data, *params], grads)
    hvp_program = td.build_program([*data, *params, *vs], hv)
    rng = np.random.default_rng(1)
    d, p, v = (_arrays(data, rng), _arrays(params, rng), _arrays(params, rng))
    eps = 1e-6
    # gradient: directional derivative along v
    plus = _mlp_numpy(*d, *[a + eps * b for a, b in zip(p, v)])
    minus = _mlp_numpy(*d, *[a - eps * b for a, b in zip(p, v)])
    g = grad_program(*d, *p)
    np.testing.assert_allclose(sum((gi * vi).sum() for gi, vi in zip(g, v)),
                               (plus - minus) / (2 * eps), rtol=1e-6)
    # Hessian-vector product: central differences of the derived gradient along v
    g_plus = grad_program(*d, *[a + eps * b for a, b in zip(p, v)])
    g_minus = grad_program(*d, *[a - eps * b for a, b in zip(p, v)])
    got = hvp_program(*d, *p, *v)
    for h, gp, gm in zip(got, g_plus, g_minus):
        np.testing.assert_allclose(h, (gp - gm) / (2 * eps), rtol=1e-5, atol=1e-7)


def test_program_refuses_missing_inputs_and_wrong_argument_counts():
    x = td.placeholder((4,), "float32", "x")
    y = td.placeholder((4,), "float32", "y")
    z = td.compute((4,), lambda i: x[i] + y[i], name="z")
    with pytest.raises(ValueError, match="'y'.*not among the inputs"):
        td.build_program([x], [z])
    program = td.build_program([x, y], [z])
    with pytest.raises(TypeError, match="expected 2 arrays"):
        program(np.zeros(4, np.float32))
