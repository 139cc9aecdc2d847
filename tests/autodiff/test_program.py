"""td.build_program: a graph cut into kernels, against numpy; and the MLP's derived
gradient and Hessian-vector product run as programs, against finite differences."""
from __future__ import annotations

import re

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


def _names(program):
    return [k.writes[0].op.name for k in program.kernels]


def test_a_product_and_its_elementwise_epilogue_are_one_kernel():
    # relu(x @ W.T + b): the matmul is the kernel's anchor, bias and relu its epilogue
    x = td.placeholder((37, 20), "float32", "x")
    w = td.placeholder((11, 20), "float32", "w")
    b = td.placeholder((11,), "float32", "b")
    y = D.relu(D.dense(x, w, b))
    program = td.build_program([x, w, b], [y])
    assert _names(program) == ["relu"]
    rng = np.random.default_rng(2)
    xa, wa, ba = (rng.standard_normal(s).astype("float32") for s in ((37, 20), (11, 20), (11,)))
    (out,) = program(xa, wa, ba)
    np.testing.assert_allclose(out, np.maximum(xa @ wa.T + ba, 0), rtol=1e-5, atol=1e-5)


def test_a_reader_of_two_reductions_anchors_one_and_reads_the_other():
    x = td.placeholder((8, 6), "float64", "x")
    rows = D.reduce_sum(x, axis=1, keepdims=True)
    peak = D.reduce_max(x, axis=1, keepdims=True)
    y = td.compute((8, 1), lambda i, j: rows[i, j] * peak[i, j], name="y")
    program = td.build_program([x], [y])
    assert len(program.kernels) == 2
    xa = np.random.default_rng(3).standard_normal((8, 6))
    (out,) = program(xa)
    np.testing.assert_allclose(out, xa.sum(1, keepdims=True) * xa.max(1, keepdims=True))


def test_copies_are_read_through_not_materialized():
    # a copy read by two stages (the gradient through a bias add feeds both products)
    # is not a kernel of its own
    x = td.placeholder((16, 8), "float64", "x")
    w = td.placeholder((8, 8), "float64", "w")
    copy = td.compute((16, 8), lambda i, j: x[i, j], name="copy")
    left = D.matmul(copy, w, name="left")
    right = D.matmul(copy, w, transpose_a=False, transpose_b=True, name="right")
    program = td.build_program([x, w], [left, right])
    assert "copy" not in _names(program)
    rng = np.random.default_rng(4)
    xa, wa = rng.standard_normal((16, 8)), rng.standard_normal((8, 8))
    got = program(xa, wa)
    np.testing.assert_allclose(got[0], xa @ wa)
    np.testing.assert_allclose(got[1], xa @ wa.T)


def test_program_checks_each_input_array():
    x = td.placeholder((4, 3), "float32", "x")
    z = td.compute((4, 3), lambda i, j: x[i, j] * 2, name="z")
    program = td.build_program([x], [z])
    with pytest.raises(ValueError, match="input 'x' must be a float32 array of shape "
                                         r"\(4, 3\), got float64"):
        program(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="'x'.*shape"):
        program(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        program(np.zeros((3, 4), np.float32).T)
    with pytest.raises(TypeError, match="'x' must be a numpy.ndarray"):
        program([[0.0] * 3] * 4)


def test_program_outputs_are_new_arrays_each_call_and_profile_names_kernels():
    x = td.placeholder((64,), "float32", "x")
    s = D.reduce_sum(x, axis=0, keepdims=True)
    z = td.compute((64,), lambda i: x[i] / s[0], name="z")
    program = td.build_program([x], [z])
    a = np.arange(1, 65, dtype=np.float32)
    first, = program(a)
    second, = program(2 * a)
    assert first is not second
    np.testing.assert_allclose(first, a / a.sum(), rtol=1e-6)
    np.testing.assert_allclose(second, a / a.sum(), rtol=1e-6)
    profile = program.profile(a, repeat=2)
    assert [name for name, _ in profile] == _names(program)
    assert all(t >= 0 for _, t in profile)


def test_a_call_runs_every_kernel_through_one_entry_point_as_kernel_by_kernel():
    # (26 calls from Python, each converting its arguments, were ~3% of a small MLP's
    # training step)
    data, params, loss = _mlp()
    program = td.build_program([*data, *params], [loss, *td.grad(loss, params)])
    plan = program._plan()
    assert plan.entry is not None and len(program.kernels) > 3
    arrays = _arrays([*data, *params], np.random.default_rng(1))
    one_call = program(*arrays)
    plan.entry, entry = None, plan.entry          # the loop of calls from Python
    kernel_by_kernel = program(*arrays)
    plan.entry = entry
    for a, b in zip(one_call, kernel_by_kernel):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(one_call[0][0], _mlp_numpy(*arrays), rtol=1e-12)
    # a kernel's failure (a temporary it could not allocate) names that kernel
    names = [k.writes[0].op.name for k in program.kernels]
    failing = next(k for k, name in enumerate(names) if names.count(name) == 1)
    plan.entry = lambda words: failing + 1
    with pytest.raises(MemoryError, match=f"^{re.escape(names[failing])}: a temporary"):
        program(*arrays)
