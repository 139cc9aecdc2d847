"""TVM's "Compute and Reduce with Tuple Inputs" (tuple_inputs.py): one compute with two
outputs, an argmax through a tuple-valued ``comm_reducer``, and a multi-output stage
computed at its consumer's loop."""
import numpy as np

import tensordsl as td
from tests.helpers import poisoned

M, N = 13, 21


def test_multiple_outputs():
    n = td.var("n")
    m = td.var("m")
    A0 = td.placeholder((m, n), name="A0")
    A1 = td.placeholder((m, n), name="A1")
    B0, B1 = td.compute((m, n), lambda i, j: (A0[i, j] + 2, A1[i, j] * 3), name="B")
    s = td.create_schedule(B0.op)
    print(td.lower(s, [A0, A1, B0, B1], simple_mode=True))
    f = td.build(s, [A0, A1, B0, B1], "llvm")
    a0, a1 = np.random.default_rng(0).uniform(size=(2, M, N)).astype("float32")
    b0, b1 = poisoned((M, N)), poisoned((M, N))
    f(a0, a1, b0, b1)
    np.testing.assert_allclose(b0, a0 + 2)
    np.testing.assert_allclose(b1, a1 * 3)


def test_argmax_reduction_with_tuple_inputs():
    # x and y are the operands of reduction, both of them is a tuple of index
    # and value.
    def fcombine(x, y):
        lhs = td.Select((x[1] >= y[1]), x[0], y[0])
        rhs = td.Select((x[1] >= y[1]), x[1], y[1])
        return lhs, rhs

    # our identity element also need to be a tuple, so `fidentity` accepts
    # two types as inputs.
    def fidentity(t0, t1):
        return td.const(-1, t0), td.min_value(t1)

    argmax = td.comm_reducer(fcombine, fidentity, name="argmax")

    # describe the reduction computation
    m = td.var("m")
    n = td.var("n")
    idx = td.placeholder((m, n), name="idx", dtype="int32")
    val = td.placeholder((m, n), name="val", dtype="int32")
    k = td.reduce_axis((0, n), "k")
    T0, T1 = td.compute((m,), lambda i: argmax((idx[i, k], val[i, k]), axis=k), name="T")

    # the generated IR code would be:
    s = td.create_schedule(T0.op)
    print(td.lower(s, [idx, val, T0, T1], simple_mode=True))
    f = td.build(s, [idx, val, T0, T1], "llvm")
    rng = np.random.default_rng(1)
    v = rng.permuted(np.tile(np.arange(N, dtype="int32"), (M, 1)), axis=1)
    i = np.tile(np.arange(N, dtype="int32"), (M, 1))
    t0, t1 = poisoned((M,), "int32"), poisoned((M,), "int32")
    f(i, v, t0, t1)
    np.testing.assert_array_equal(t0, v.argmax(axis=1))
    np.testing.assert_array_equal(t1, v.max(axis=1))


def test_schedule_operation_with_tuple_inputs():
    n = td.var("n")
    m = td.var("m")
    A0 = td.placeholder((m, n), name="A0")
    B0, B1 = td.compute((m, n), lambda i, j: (A0[i, j] + 2, A0[i, j] * 3), name="B")
    A1 = td.placeholder((m, n), name="A1")
    C = td.compute((m, n), lambda i, j: A1[i, j] + B0[i, j], name="C")

    s = td.create_schedule(C.op)
    s[B0].compute_at(s[C], C.op.axis[0])
    # as you can see in the below generated IR code:
    print(td.lower(s, [A0, A1, C], simple_mode=True))
    f = td.build(s, [A0, A1, C], "llvm")
    a0, a1 = np.random.default_rng(2).uniform(size=(2, M, N)).astype("float32")
    c = poisoned((M, N))
    f(a0, a1, c)
    np.testing.assert_allclose(c, a1 + (a0 + 2), rtol=1e-6)
