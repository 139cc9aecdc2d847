"""TVM's ``create_group`` tests (tests/python/te/test_te_schedule.py,
``test_schedule_create_group``; test_te_schedule_ops.py, ``test_schedule_compute_group``):
a chain of stages placed together at a consumer's loop."""
import numpy as np
import pytest

import tensordsl as td
from tests.helpers import poisoned


def _chain():
    m = td.var("m")
    n = td.var("n")
    x = td.compute((m, n), lambda i, j: td.const(1.0, "float32"), name="x")
    k1 = td.reduce_axis((0, n), name="k1")
    k2 = td.reduce_axis((0, n), name="k2")
    A = td.placeholder((m, n), name="A")
    y = td.compute((m, n), lambda i, j: A[i, j] + x[i, j], name="y")
    add = td.compute((m,), lambda i: td.sum(y[i, k1], axis=k1), name="add")
    mul = td.compute((m,), lambda i: add[i] * 2.0, name="mul")
    return A, x, y, add, mul


def test_group_members():
    A, x, y, add, mul = _chain()
    s = td.create_schedule(mul.op)
    g = s.create_group(outputs=add, inputs=[x, A])
    assert [st.name for st in g.stages] == ["y", "add"]
    g = s.create_group(outputs=add, inputs=[x, A], include_inputs=True)
    assert [st.name for st in g.stages] == ["x", "y", "add"]


@pytest.mark.parametrize("member_split", [False, True])
def test_group_computed_at_a_consumer_loop(member_split):
    m = td.var("m")
    n = td.var("n")
    A = td.placeholder((m, n), name="A")
    B = td.compute((m, n), lambda i, j: A(i, j) + 1.0, name="B")
    C = td.compute((m, n), lambda i, j: B(i, j) * 2.0, name="C")
    D = td.compute((m, n), lambda i, j: C(i, j) - 3.0, name="D")
    s = td.create_schedule(D.op)
    g = s.create_group(outputs=C, inputs=A, include_inputs=False)
    xo, xi = s[D].split(D.op.axis[0], factor=4)
    g.compute_at(s[D], xo)
    if member_split:
        # a member may still be placed on its own, inside the group's place
        s[B].compute_at(s[C], C.op.axis[1])
    print(td.lower(s, [A, D], simple_mode=True))
    f = td.build(s, [A, D], "llvm")
    a = np.random.default_rng(0).uniform(size=(10, 7)).astype("float32")
    d = poisoned((10, 7))
    f(a, d)
    np.testing.assert_allclose(d, (a + 1) * 2 - 3, rtol=1e-6)
