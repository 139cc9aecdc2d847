"""TOPI's softmax and its x86 schedule (``topi/x86/nn.py: _schedule_softmax``): the
``max``, ``exp`` and ``sum`` stages attached at the output's row axis, ``max`` first,
although the output reads ``max`` only through ``exp`` (attached afterwards)."""
import numpy as np
import pytest

import tensordsl as td
from tests.helpers import poisoned


def _softmax(x):
    m, n = x.shape
    k1 = td.reduce_axis((0, n), name="k")
    max_elem = td.compute((m,), lambda i: td.max(x[i, k1], axis=k1), name="T_softmax_maxelem")
    exp = td.compute((m, n), lambda i, j: td.exp(x[i, j] - max_elem[i]), name="T_softmax_exp")
    k2 = td.reduce_axis((0, n), name="k")
    expsum = td.compute((m,), lambda i: td.sum(exp[i, k2], axis=k2), name="T_softmax_expsum")
    return td.compute((m, n), lambda i, j: exp[i, j] / expsum[i], name="T_softmax_norm")


@pytest.mark.parametrize("order", ["topi", "reversed"])
def test_x86_softmax_schedule(order):
    x = td.placeholder((19, 37), name="x")
    outs = [_softmax(x)]
    s = td.create_schedule([y.op for y in outs])
    softmax = outs[0]
    exp = softmax.op.input_tensors[0]
    expsum = softmax.op.input_tensors[1]
    max_elem = s[exp].op.input_tensors[1]
    axis = s[softmax].op.axis[0]
    s[softmax].parallel(axis)
    stages = [max_elem, exp, expsum]
    for t in (stages if order == "topi" else stages[::-1]):
        s[t].compute_at(s[softmax], axis)
    f = td.build(s, [x, softmax], "llvm")
    a = np.random.default_rng(0).standard_normal((19, 37)).astype("float32")
    y = poisoned((19, 37))
    f(a, y)
    e = np.exp(a - a.max(axis=1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=1, keepdims=True), rtol=1e-5)
