"""TOPI's softmax and its x86 schedule (``topi/x86/nn.py: _schedule_softmax``): the
``max``, ``exp`` and ``sum`` stages attached at the output's (fused outer) row axis,
``max`` first although the output reads it only through ``exp``, attached afterwards.
Attachments are checked when lowering, once the schedule is complete."""
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


@pytest.mark.parametrize("order", ["topi", "max_exp_sum", "reversed"])
def test_x86_softmax_schedule(order):
    x = td.placeholder((19, 37), name="x")
    outs = [_softmax(x)]
    s = td.create_schedule([y.op for y in outs])
    softmax_op = outs[0].op
    exp = softmax_op.input_tensors[0]
    expsum = softmax_op.input_tensors[1]
    max_elem = s[exp].op.input_tensors[1]
    axis = 1
    output_op = outs[0].op
    # only parallelize outer dimensions up to axis
    outer_axes = [output_op.axis[i] for i in range(0, axis)]
    fused_outer_axes = s[output_op].fuse(*outer_axes)
    s[output_op].parallel(fused_outer_axes)
    # move computations with the same outer dimensions under the same root
    stages = {"topi": [max_elem, expsum, exp], "max_exp_sum": [max_elem, exp, expsum],
              "reversed": [exp, expsum, max_elem]}[order]
    for t in stages:
        s[t].compute_at(s[output_op], fused_outer_axes)
    f = td.build(s, [x, outs[0]], "llvm")
    a = np.random.default_rng(0).standard_normal((19, 37)).astype("float32")
    y = poisoned((19, 37))
    f(a, y)
    e = np.exp(a - a.max(axis=1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=1, keepdims=True), rtol=1e-5)


def test_attachment_that_stays_illegal_is_refused_when_lowering():
    """``max`` at the row loop while ``exp``, which reads it, stays at root: each call is
    legal when made, the finished schedule is not."""
    x = td.placeholder((19, 37), name="x")
    y = _softmax(x)
    s = td.create_schedule(y.op)
    exp = y.op.input_tensors[0]
    max_elem = s[exp].op.input_tensors[1]
    s[max_elem].compute_at(s[y], y.op.axis[0])
    with pytest.raises(RuntimeError, match="'T_softmax_exp' also reads it outside"):
        td.lower(s, [x, y])
